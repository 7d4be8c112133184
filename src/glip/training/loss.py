"""The GLIP training loss: token-level alignment focal loss, GIoU box loss, centerness BCE, and
optionally the phrase cross-entropy (ours, not in GLIP; see `phrase_cross_entropy`).

Terms come back unweighted and named; the training loop applies the weights (official: box 2.0).
Normalisation follows the official code: the token and centerness terms are divided by the number
of positive anchors, the box term by the sum of the centerness targets, each averaged over
processes (summed across processes, divided by the world size) when training is distributed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from glip.distributed import average_across_processes
from glip.modeling.box_coder import BoxCoder
from glip.modeling.glip import GLIPOutput
from glip.training.assigner import atss_assign

DEFAULT_WEIGHTS = {"token": 1.0, "box": 2.0, "centerness": 1.0}


@dataclass
class LossConfig:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    atss_top_k: int = 9
    phrase_ce: bool = False  # also return the "phrase_ce" term (`phrase_cross_entropy`)
    phrase_ce_candidates: str = "phrases"  # what the term's softmax ranks: "phrases" or "tokens"


def phrase_groups(target: dict, text_mask: torch.Tensor) -> torch.Tensor:
    """[L] int64: the candidate each token of one prompt belongs to in `phrase_cross_entropy`, -1 off.

    A category name (detection data, ``token_labels``) is one candidate whether or not the image
    holds it; a phrase with a box (a ``positive_map`` row) is one candidate; every other token of
    the prompt (``text_mask``: [L]) is a candidate of its own; padding is none. Ids run 0..G-1.
    """
    length = text_mask.shape[0]
    groups = torch.full((length,), -1, dtype=torch.int64)
    valid = (text_mask > 0).cpu()
    next_id = 0
    labels = target.get("token_labels")
    if labels is not None:
        labels = labels.cpu()
        for key in labels[valid & (labels >= 0)].unique().tolist():
            groups[valid & (labels == key)] = next_id
            next_id += 1
    for row in target["positive_map"].cpu().unique(dim=0):
        free = valid & (row > 0) & (groups < 0)
        if free.any():
            groups[free] = next_id
            next_id += 1
    loose = valid & (groups < 0)
    groups[loose] = torch.arange(next_id, next_id + int(loose.sum()))
    return groups


def phrase_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the prompt's candidate names of each positive anchor, summed over anchors.

    The focal term scores every token on its own, so an anchor may score "hexagon" and "circle"
    alike and pay little for it; this term is a softmax over the anchor's candidates whose target
    is its own phrase: the anchor pays for every other name that scores near its own. A
    candidate's logit is the mean of its tokens' logits (the detections name an anchor by the mean
    of its phrase's token scores), so a name of three word pieces ("he ##xa ##gon") competes with
    a one-piece name ("circle") on equal terms. ``groups`` with every token its own candidate
    gives the softmax over tokens, which splits a long name's target over its pieces and leaves
    each piece's logit log(pieces) below a one-piece name's at the same probability. Ours, not in
    GLIP or GLIPv2 (GLIPv2's L_inter is a cross-entropy over tokens on separate projections; this
    one acts on the detection scores themselves).

    Args:
        logits: [P, L] token logits of P positive anchors.
        targets: [P, L] their binary token targets (the positive map rows); rows without a token
            (a phrase the text window cut off) are left out. Each target token gives its candidate
            an equal share of the target (all to one candidate when the phrase is one).
        groups: [P, L] int64 candidate id of each token of the anchor's prompt (`phrase_groups`),
            -1 for tokens that are no candidate (padding).

    Returns:
        The summed cross-entropy, a scalar (0 with no row).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0]])
        >>> round(float(phrase_cross_entropy(logits, torch.tensor([[1.0, 0.0, 0.0]]),
        ...                                  torch.tensor([[0, 1, 2]]))), 4)
        0.2395
    """
    keep = targets.sum(dim=1) > 0
    logits, targets, groups = logits[keep].float(), targets[keep].float(), groups[keep].to(logits.device)
    rows, length = logits.shape
    member = groups >= 0
    slots = groups.clamp(min=0)
    sums = logits.new_zeros(rows, length).scatter_add_(1, slots, torch.where(member, logits, 0.0))
    counts = logits.new_zeros(rows, length).scatter_add_(1, slots, member.float())
    candidate_logits = (sums / counts.clamp(min=1.0)).masked_fill(counts == 0, float("-inf"))  # [P, G <= L]
    log_probs = torch.log_softmax(candidate_logits, dim=1)  # [P, G]
    shares = targets * member / targets.sum(dim=1, keepdim=True)  # each target token's share of the target
    wanted = logits.new_zeros(rows, length).scatter_add_(1, slots, shares)  # [P, G]
    return -torch.where(wanted > 0, wanted * log_probs, 0.0).sum()


def giou_loss(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4], [N, 4] xyxy -> [N] 1 - GIoU (continuous areas, degenerate predictions allowed)."""
    x1, y1 = pred_boxes[:, 0], pred_boxes[:, 1]
    x2 = torch.max(x1, pred_boxes[:, 2])
    y2 = torch.max(y1, pred_boxes[:, 3])
    tx1, ty1, tx2, ty2 = target_boxes.unbind(dim=1)
    pred_area = (x2 - x1) * (y2 - y1)
    target_area = (tx2 - tx1) * (ty2 - ty1)
    inter_w = torch.min(x2, tx2) - torch.max(x1, tx1)
    inter_h = torch.min(y2, ty2) - torch.max(y1, ty1)
    overlap = (inter_w > 0) & (inter_h > 0)
    intersection = torch.where(overlap, inter_w * inter_h, torch.zeros_like(inter_w))
    enclosing = (torch.max(x2, tx2) - torch.min(x1, tx1)) * (torch.max(y2, ty2) - torch.min(y1, ty1)) + 1e-7
    union = pred_area + target_area - intersection + 1e-7
    giou = intersection / union - (enclosing - union) / enclosing
    return 1 - giou


def centerness_targets(target_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """[N] sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)) of the anchor centre inside its box."""
    cx = (anchors[:, 2] + anchors[:, 0]) / 2
    cy = (anchors[:, 3] + anchors[:, 1]) / 2
    left_right = torch.stack([cx - target_boxes[:, 0], target_boxes[:, 2] - cx], dim=1)
    top_bottom = torch.stack([cy - target_boxes[:, 1], target_boxes[:, 3] - cy], dim=1)
    return torch.sqrt((left_right.min(dim=1).values / left_right.max(dim=1).values)
                      * (top_bottom.min(dim=1).values / top_bottom.max(dim=1).values))


class GLIPLoss:
    """Call with the model output, the per-image targets and the text attention mask.

    targets[i]: ``boxes`` [G, 4] xyxy in network-input pixels, ``positive_map`` [G, L] binary token
    rows of each box's phrase. Returns ``{"token", "box", "centerness"}`` (and ``"phrase_ce"`` when
    ``config.phrase_ce``), unweighted.
    """

    def __init__(self, config: LossConfig | None = None, box_coder: BoxCoder | None = None) -> None:
        self.config = config or LossConfig()
        self.box_coder = box_coder or BoxCoder()

    @torch.no_grad()
    def assign(self, anchors: list[torch.Tensor], targets: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns token targets [B, A, L], matched boxes [B, A, 4] and the positive mask [B, A]."""
        token_targets, matched_boxes, positives = [], [], []
        for target in targets:
            boxes = target["boxes"].to(anchors[0].dtype)
            assignment = atss_assign(anchors, boxes, self.config.atss_top_k)
            matched = assignment.matched_box.clamp(min=0)
            positive = assignment.positive
            rows = target["positive_map"].to(anchors[0].dtype)
            num_anchors = positive.shape[0]
            if boxes.shape[0]:
                token_targets.append(rows[matched] * positive[:, None])
                matched_boxes.append(boxes[matched])
            else:
                token_targets.append(rows.new_zeros((num_anchors, rows.shape[1])))
                matched_boxes.append(boxes.new_zeros((num_anchors, 4)))
            positives.append(positive)
        return torch.stack(token_targets), torch.stack(matched_boxes), torch.stack(positives)

    def _candidates(self, targets: list[dict], text_mask: torch.Tensor) -> torch.Tensor:
        """[B, L] the `phrase_cross_entropy` candidate id of each token of each image's prompt."""
        if self.config.phrase_ce_candidates == "tokens":
            per_image = [torch.where(mask > 0, torch.arange(mask.shape[0]), -1) for mask in text_mask.cpu()]
        else:
            per_image = [phrase_groups(target, mask) for target, mask in zip(targets, text_mask)]
        return torch.stack(per_image).to(text_mask.device)

    def __call__(self, output: GLIPOutput, targets: list[dict], text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        head = output.head
        anchors = torch.cat(output.anchors)  # [A, 4]
        token_targets, matched_boxes, positive = self.assign(output.anchors, targets)
        batch = positive.shape[0]

        logits = torch.cat(head.token_logits, dim=1)  # [B, A, L]
        deltas = torch.cat([r.flatten(2).transpose(1, 2) for r in head.box_regression], dim=1)  # [B, A, 4]
        centerness = torch.cat([c.flatten(1) for c in head.centerness], dim=1)  # [B, A]

        num_positive = average_across_processes(float(positive.sum()))
        normaliser = max(num_positive, 1.0)
        token_mask = (text_mask > 0)[:, None, :].expand_as(logits)  # text tokens only
        token = sigmoid_focal_loss(logits[token_mask], token_targets[token_mask].to(logits.dtype),
                                   alpha=self.config.focal_alpha, gamma=self.config.focal_gamma,
                                   reduction="sum") / normaliser

        positive_anchors = anchors[None].expand(batch, -1, -1)[positive]  # [P, 4]
        target_boxes = matched_boxes[positive]
        if positive.any():
            predicted = self.box_coder.decode(deltas[positive], positive_anchors)
            # Targets go through encode/decode like the official code (same rounding).
            targets_decoded = self.box_coder.decode(self.box_coder.encode(target_boxes, positive_anchors),
                                                    positive_anchors)
            centre_targets = centerness_targets(targets_decoded, positive_anchors)
            centre_sum = average_across_processes(float(centre_targets.sum()))
            box = (giou_loss(predicted, targets_decoded) * centre_targets).sum() / centre_sum
            centre = F.binary_cross_entropy_with_logits(centerness[positive], centre_targets,
                                                        reduction="sum") / normaliser
        else:
            average_across_processes(0.0)  # keep collective calls in step across processes
            box = deltas.sum() * 0.0
            centre = centerness.sum() * 0.0
        terms = {"token": token, "box": box, "centerness": centre}
        if self.config.phrase_ce:
            terms["phrase_ce"] = phrase_cross_entropy(logits[positive], token_targets[positive],
                                                      self._candidates(targets, text_mask)[:, None, :]
                                                      .expand_as(logits)[positive]) / normaliser
        return terms
