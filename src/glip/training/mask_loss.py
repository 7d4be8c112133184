"""The mask term of GLIPv2's language-aware instance segmentation (`glip.modeling.mask_head`).

RoIs are the ground-truth boxes of the images whose targets carry ``masks`` (records where every
box has an instance mask; other images contribute nothing), optionally jittered. Each box's phrase
feature is the mean of the fused token features over its positive tokens (its row of the positive
map; a box without any is skipped). The target of a box is its instance mask RoIAligned into the
box's R x R grid (aligned=True) and thresholded at 0.5, as Mask R-CNN; the loss is the per-pixel
BCE with logits, summed and divided by the number of pixels of all boxes averaged over processes
(summed across processes, divided by the world size), like the other terms of `glip.training.loss`.
A batch without masks gives an exact zero that keeps the graph (so every process runs the same
backward). The official v1 code averages the per-token logits over the phrase's tokens instead
(`VLMaskRCNNC4Predictor`); see the mask head for what is ours.

Example:
    >>> loss = MaskLoss(box_jitter=0.0)
    >>> value = loss(output, batch.targets, batch.images.shape[-2:], model.mask_head)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from glip.distributed import average_across_processes
from glip.modeling.glip import GLIPOutput
from glip.modeling.mask_head import LanguageAwareMaskHead, phrase_features


@dataclass
class MaskRoIs:
    """Per image: the boxes [N_i, 4] (network-input pixels), each box's phrase tokens, and the
    binary targets [N_i, R, R] of each box's grid."""

    boxes: list[torch.Tensor]
    token_sets: list[list[list[int]]]
    targets: list[torch.Tensor]


def jitter_boxes(boxes: torch.Tensor, fraction: float, height: int, width: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """[N, 4] xyxy -> each coordinate moved by up to ``fraction`` of the box's width (x) or height
    (y), uniformly, then clipped to the image and kept at least one pixel wide and high."""
    if fraction <= 0 or boxes.numel() == 0:
        return boxes
    sizes = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # [N, 4] as (w, h, w, h)
    noise = torch.rand(boxes.shape, generator=generator).to(boxes) * 2 - 1  # U(-1, 1)
    moved = boxes + noise * fraction * sizes
    x0 = moved[:, 0].clamp(0, width - 1)
    y0 = moved[:, 1].clamp(0, height - 1)
    x1 = torch.maximum(moved[:, 2].clamp(max=width), x0 + 1)
    y1 = torch.maximum(moved[:, 3].clamp(max=height), y0 + 1)
    return torch.stack([x0, y0, x1, y1], dim=1)


def mask_targets(masks: torch.Tensor, boxes: torch.Tensor, resolution: int, chunk: int = 16) -> torch.Tensor:
    """Instance masks [N, H, W] (0/1) and their boxes [N, 4] -> [N, R, R] bool: the mask inside
    each box's grid (RoIAlign, aligned=True, each box on its own mask), > 0.5. ``chunk`` masks at a
    time are made float, so that many instances of a large image do not need N x H x W floats."""
    out = []
    for start in range(0, boxes.shape[0], chunk):
        part = boxes[start:start + chunk]
        index = torch.arange(part.shape[0], device=boxes.device, dtype=boxes.dtype)[:, None]
        sampled = roi_align(masks[start:start + chunk, None].to(boxes.dtype), torch.cat([index, part], dim=1),
                            resolution, spatial_scale=1.0, sampling_ratio=2, aligned=True)  # [n, 1, R, R]
        out.append(sampled[:, 0] > 0.5)
    if not out:
        return torch.zeros(0, resolution, resolution, dtype=torch.bool, device=boxes.device)
    return torch.cat(out)


@torch.no_grad()
def collect_mask_rois(targets: list[dict], resolution: int, box_jitter: float = 0.0,
                      generator: torch.Generator | None = None) -> MaskRoIs:
    """The training RoIs of a batch (see the module docstring); images without masks get none."""
    rois = MaskRoIs(boxes=[], token_sets=[], targets=[])
    for target in targets:
        boxes = target["boxes"]
        masks = target.get("masks")
        if masks is None or boxes.shape[0] == 0:
            rois.boxes.append(boxes.new_zeros(0, 4))
            rois.token_sets.append([])
            rois.targets.append(torch.zeros(0, resolution, resolution, dtype=torch.bool, device=boxes.device))
            continue
        if masks.shape[0] != boxes.shape[0]:
            raise ValueError(f"targets carry {masks.shape[0]} masks for {boxes.shape[0]} boxes; "
                             "an image's masks must be one per box")
        has_tokens = target["positive_map"].sum(dim=1) > 0  # [N]
        boxes, masks = boxes[has_tokens].float(), masks[has_tokens]
        height, width = masks.shape[-2:]
        boxes = jitter_boxes(boxes, box_jitter, height, width, generator)
        rois.boxes.append(boxes)
        rois.token_sets.append([row.nonzero().squeeze(1).tolist() for row in target["positive_map"][has_tokens]])
        rois.targets.append(mask_targets(masks, boxes, resolution))
    return rois


class MaskLoss:
    """The unweighted ``mask`` term.

    Args:
        box_jitter: each RoI coordinate moves by up to this fraction of the box size (0 = the
            ground-truth boxes as they are).
    """

    def __init__(self, box_jitter: float = 0.0) -> None:
        if not 0.0 <= box_jitter < 0.5:
            raise ValueError(f"mask box jitter must be in [0, 0.5), got {box_jitter}")
        self.box_jitter = box_jitter

    def __call__(self, output: GLIPOutput, targets: list[dict], image_size: tuple[int, int],
                 head: LanguageAwareMaskHead, generator: torch.Generator | None = None) -> torch.Tensor:
        """``image_size``: the padded input's (H, W). Returns a scalar."""
        rois = collect_mask_rois(targets, head.config.resolution, self.box_jitter, generator)
        phrases = phrase_features(output.head.text, rois.token_sets)  # per image [N_i, D]
        logits = head(output.head.visual, rois.boxes, phrases, tuple(image_size))  # [K, R, R]
        pixels = average_across_processes(float(logits.numel()))  # every process calls it, boxes or not
        if logits.shape[0] == 0:
            # Zero, with the graph through the head and the fused features intact.
            return logits.sum() * 0.0 + output.head.visual[0].sum() * 0.0 + output.head.text.sum() * 0.0
        target = torch.cat(rois.targets).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / max(pixels, 1.0)
