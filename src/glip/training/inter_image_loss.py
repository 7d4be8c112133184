"""GLIPv2's inter-image region-word contrastive loss (L_inter).

Every positive region of the batch is compared with every text token of the batch:

- regions: the fused visual features (``HeadOutput.visual``) at the ATSS-positive anchors, at most
  ``max_positives_per_image`` per image, drawn at random with the step's generator when there are
  more;
- tokens: the fused text features (``HeadOutput.text``) of the valid tokens (attention mask 1,
  ``[CLS]``/``[SEP]`` included, as the official text mask);
- S = cosine of the projected, L2-normalised embeddings (`InterImageProjections`, 64-d) divided by
  a learnable temperature exp(log_temperature), initialised to 1;
- target T: inside an image, the assigned box's positive-map row (the anchor's token targets);
  across images, 1 where the region's box and the token name the same detection category (the
  ``labels``/``token_labels`` keys of detection targets; grounding data has none, so its regions
  and tokens have in-image positives only);
- loss = soft cross-entropy of each row (region -> tokens) and each column (token -> regions) with
  T normalised to sum 1 along it, rows and columns without a positive left out, (sum of both) / 2
  / the number of ATSS-positive anchors of the batch (before the cap), as the official code.

Under torchrun, regions, tokens and their target keys of all processes are gathered, so the
negatives span the global batch; each process's own features keep their gradient.

Departures from the official switch (``USE_SHALLOW_CONTRASTIVE_LOSS``, v1 code):

- The official code leaves out anchors matched to ground-truth box 0 (``nonzero`` on the matched
  box indices), which looks like a bug; every ATSS-positive anchor is a candidate here.
- No padding: each process contributes its regions as they are, where the official code pads every
  image to the largest count (with random negative anchors, or zeros masked out).
- Every process computes the rows and columns of the whole gathered batch, and the gradient that
  reaches its own region and token embeddings is multiplied by the number of processes (DDP
  averages it): the official code computes its local rows and columns only, so the gradient that
  a row of one process sends to another process's tokens is lost there. Here 2 processes x B/2 images give the
  loss and the gradients of 1 process x B images (``tests/training/test_inter_image_loss.py``).
- The normaliser is the batch's positive count (sum over processes), where the official divides
  each process's loss by the per-process average (the same whenever every process has one).
- The ATSS assignment is computed again here (`glip.training.assigner.atss_assign`, no gradient)
  rather than shared with `GLIPLoss`, to keep both losses self-contained.

Example:
    >>> loss_fn = InterImageLoss(max_positives_per_image=100)  # doctest: +SKIP
    >>> loss = loss_fn(output, batch.targets, batch.attention_mask, model.pretraining_heads.inter_image,
    ...                generator)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glip.distributed import average_across_processes, gather_rows_across_processes, process_count
from glip.modeling.glip import GLIPOutput
from glip.modeling.pretraining_heads import InterImageProjections
from glip.training.assigner import atss_assign

UNLABELLED = -1  # a region or token without a detection category (grounding data)


@dataclass
class RegionsAndTokens:
    """One process's regions (the rows of the similarity matrix) and tokens (its columns).

    Attributes:
        regions: ``[R, C]`` visual features of the selected positive anchors.
        region_images: ``[R]`` int64, the region's image in this process's batch.
        region_labels: ``[R]`` int64 category key of the matched box, ``UNLABELLED`` without one.
        region_targets: ``[R, L]`` float, the matched box's positive-map row (its in-image targets).
        tokens: ``[T, D]`` text features of the valid tokens.
        token_images: ``[T]`` int64, the token's image in this process's batch.
        token_positions: ``[T]`` int64, the token's position in its prompt (``< L``).
        token_labels: ``[T]`` int64 category key of the name the token is part of, or ``UNLABELLED``.
        num_images: images in this process's batch.
        num_positive: ATSS-positive anchors of this process's batch, before the cap (the normaliser).
    """

    regions: torch.Tensor
    region_images: torch.Tensor
    region_labels: torch.Tensor
    region_targets: torch.Tensor
    tokens: torch.Tensor
    token_images: torch.Tensor
    token_positions: torch.Tensor
    token_labels: torch.Tensor
    num_images: int
    num_positive: int


@torch.no_grad()
def sample_positive_anchors(positive: torch.Tensor, max_count: int,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """[A] bool positive anchors -> sorted indices of at most ``max_count`` of them, drawn without
    replacement with ``generator`` (a CPU generator) when there are more."""
    indices = positive.nonzero().squeeze(1)  # [P]
    if indices.numel() <= max_count:
        return indices
    chosen = torch.randperm(indices.numel(), generator=generator)[:max_count].to(indices.device)
    return indices[chosen].sort().values


def collect_regions_and_tokens(output: GLIPOutput, targets: list[dict], text_mask: torch.Tensor,
                               max_positives_per_image: int = 100, atss_top_k: int = 9,
                               generator: torch.Generator | None = None) -> RegionsAndTokens:
    """The regions and tokens of one process's batch (see `RegionsAndTokens`).

    ``targets[i]``: ``boxes`` [G, 4], ``positive_map`` [G, L]; for detection data also ``labels``
    [G] and ``token_labels`` [L] (category keys). ``text_mask``: [B, L], 1 on valid tokens."""
    visual = torch.cat([level.flatten(2).transpose(1, 2) for level in output.head.visual], dim=1)  # [B, A, C]
    text = output.head.text  # [B, L, D]
    length = text.shape[1]
    device = visual.device
    regions, region_images, region_labels, region_targets, num_positive = [], [], [], [], 0
    token_labels = []
    for image, target in enumerate(targets):
        boxes = target["boxes"].to(output.anchors[0].dtype)
        matched = atss_assign(output.anchors, boxes, atss_top_k).matched_box  # [A]
        num_positive += int((matched >= 0).sum())
        chosen = sample_positive_anchors(matched >= 0, max_positives_per_image, generator)  # [K]
        boxes_of_chosen = matched[chosen]  # [K]
        regions.append(visual[image, chosen])  # [K, C]
        region_images.append(torch.full_like(chosen, image))
        region_targets.append(target["positive_map"].to(device=device, dtype=visual.dtype)[boxes_of_chosen])  # [K, L]
        labels = target.get("labels")
        region_labels.append(labels.to(device)[boxes_of_chosen] if labels is not None
                             else torch.full_like(chosen, UNLABELLED))
        keys = target.get("token_labels")
        token_labels.append(keys.to(device) if keys is not None
                            else torch.full((length,), UNLABELLED, dtype=torch.long, device=device))
    valid = text_mask.to(device) > 0  # [B, L]
    token_images, token_positions = valid.nonzero(as_tuple=True)  # [T], [T]
    return RegionsAndTokens(
        regions=torch.cat(regions), region_images=torch.cat(region_images), region_labels=torch.cat(region_labels),
        region_targets=torch.cat(region_targets), tokens=text[valid], token_images=token_images,
        token_positions=token_positions, token_labels=torch.stack(token_labels)[valid],
        num_images=len(targets), num_positive=num_positive,
    )


def inter_image_targets(region_images: torch.Tensor, region_labels: torch.Tensor, region_targets: torch.Tensor,
                        token_images: torch.Tensor, token_positions: torch.Tensor,
                        token_labels: torch.Tensor) -> torch.Tensor:
    """T_batch [R, T]: the region's positive-map row on the tokens of its own image, and 1 on the
    tokens of other images that name the region's category (both labelled and equal), else 0.
    Image indices must be unique across the batch (global ones when gathered)."""
    same_image = region_images[:, None] == token_images[None, :]  # [R, T]
    in_image = region_targets[:, token_positions]  # [R, T]
    same_category = (region_labels[:, None] == token_labels[None, :]) & (region_labels[:, None] != UNLABELLED)
    return torch.where(same_image, in_image, same_category.to(in_image.dtype))


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the rows with a positive of -sum_j t_ij log softmax(logits_i)_j, with each target
    row normalised to sum 1. [N, M], [N, M] -> scalar (0 without any positive row)."""
    rows = targets.sum(dim=1) > 0  # [N]
    weights = targets[rows] / targets[rows].sum(dim=1, keepdim=True)  # [N', M]
    return -(weights * logits[rows].log_softmax(dim=1)).sum()


def _scale_gradient(value: torch.Tensor, factor: float) -> torch.Tensor:
    """``value`` unchanged, its gradient multiplied by ``factor``."""
    return value.detach() + factor * (value - value.detach())


def inter_image_loss(parts: RegionsAndTokens, projections: InterImageProjections) -> torch.Tensor:
    """L_inter of the (global) batch from this process's regions and tokens (a collective under
    torchrun: every process must call it)."""
    regions = projections.embed_regions(parts.regions)  # [R, d]
    tokens = projections.embed_tokens(parts.tokens)  # [T, d]
    processes = process_count()
    if processes > 1:
        # Every process computes the whole-batch loss, so the gradient reaching its own features
        # is the loss's full gradient for them, and the sum over processes is the full gradient
        # of the projections; DDP averages, so multiply by the process count. (The temperature
        # gets its full gradient in every process: no scaling.)
        regions, tokens = _scale_gradient(regions, processes), _scale_gradient(tokens, processes)
    device = regions.device
    # Gather features and target keys of all processes; image indices become global.
    _, image_offset = gather_rows_across_processes(torch.zeros(parts.num_images, 1, device=device))
    all_regions, _ = gather_rows_across_processes(regions)  # [R_g, d]
    all_tokens, _ = gather_rows_across_processes(tokens)  # [T_g, d]
    region_keys, _ = gather_rows_across_processes(
        torch.stack([parts.region_images + image_offset, parts.region_labels], dim=1))  # [R_g, 2]
    token_keys, _ = gather_rows_across_processes(
        torch.stack([parts.token_images + image_offset, parts.token_positions, parts.token_labels], dim=1))  # [T_g, 3]
    region_targets, _ = gather_rows_across_processes(parts.region_targets.to(regions.dtype))  # [R_g, L]

    targets = inter_image_targets(region_keys[:, 0], region_keys[:, 1], region_targets,
                                  token_keys[:, 0], token_keys[:, 1], token_keys[:, 2])  # [R_g, T_g]
    similarity = projections.similarity(all_regions, all_tokens)  # [R_g, T_g]
    total = soft_cross_entropy(similarity, targets) + soft_cross_entropy(similarity.t(), targets.t())
    num_positive = average_across_processes(float(parts.num_positive)) * processes
    return total / 2 / max(num_positive, 1.0)


class InterImageLoss:
    """Call with the model output, the targets, the text mask, the model's `InterImageProjections`
    and the step's generator; returns the unweighted L_inter."""

    def __init__(self, max_positives_per_image: int = 100, atss_top_k: int = 9) -> None:
        if max_positives_per_image < 1:
            raise ValueError(f"max_positives_per_image must be >= 1, got {max_positives_per_image}")
        self.max_positives_per_image = max_positives_per_image
        self.atss_top_k = atss_top_k

    def __call__(self, output: GLIPOutput, targets: list[dict], text_mask: torch.Tensor,
                 projections: InterImageProjections, generator: torch.Generator | None = None) -> torch.Tensor:
        parts = collect_regions_and_tokens(output, targets, text_mask, self.max_positives_per_image,
                                           self.atss_top_k, generator)
        return inter_image_loss(parts, projections)
