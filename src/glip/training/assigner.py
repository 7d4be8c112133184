"""ATSS anchor assignment (adaptive training sample selection), computed without gradients.

For every ground-truth box: take the k anchors per level whose centres are nearest to the box
centre, set the IoU threshold to mean + std of their IoUs, and keep those at or above it whose
centre lies inside the box (by > 0.01 px). An anchor claimed by several boxes goes to the box with
the highest IoU. IoUs use the legacy "+1" pixel convention, as in the official model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NO_MATCH = -1


@dataclass
class Assignment:
    """matched_box: [A] index of the assigned box per anchor, NO_MATCH (-1) for negatives."""

    matched_box: torch.Tensor

    @property
    def positive(self) -> torch.Tensor:
        return self.matched_box >= 0


def box_iou_legacy(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """[N, 4], [M, 4] xyxy -> [N, M] IoU with widths x2 - x1 + 1."""
    area1 = (boxes1[:, 2] - boxes1[:, 0] + 1) * (boxes1[:, 3] - boxes1[:, 1] + 1)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + 1) * (boxes2[:, 3] - boxes2[:, 1] + 1)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left + 1).clamp(min=0)  # [N, M, 2]
    intersection = wh[..., 0] * wh[..., 1]
    return intersection / (area1[:, None] + area2[None, :] - intersection)


def centres(boxes: torch.Tensor) -> torch.Tensor:
    return torch.stack([(boxes[:, 2] + boxes[:, 0]) / 2.0, (boxes[:, 3] + boxes[:, 1]) / 2.0], dim=1)


@torch.no_grad()
def atss_assign(anchors_per_level: list[torch.Tensor], boxes: torch.Tensor, top_k: int = 9) -> Assignment:
    """anchors_per_level: per level [A_l, 4]; boxes: [G, 4] xyxy -> Assignment over the A = sum A_l anchors."""
    anchors = torch.cat(anchors_per_level)  # [A, 4]
    num_anchors, num_boxes = anchors.shape[0], boxes.shape[0]
    if num_boxes == 0:
        return Assignment(torch.full((num_anchors,), NO_MATCH, dtype=torch.long, device=anchors.device))
    ious = box_iou_legacy(anchors, boxes)  # [A, G]
    distances = (centres(anchors)[:, None, :] - centres(boxes)[None, :, :]).pow(2).sum(-1).sqrt()  # [A, G]

    candidates, start = [], 0
    for level in anchors_per_level:
        end = start + level.shape[0]
        k = min(top_k, level.shape[0])
        _, nearest = distances[start:end].topk(k, dim=0, largest=False)  # [k, G]
        candidates.append(nearest + start)
        start = end
    candidates = torch.cat(candidates)  # [C, G]
    box_index = torch.arange(num_boxes, device=anchors.device)
    candidate_ious = ious[candidates, box_index]  # [C, G]
    threshold = candidate_ious.mean(0) + candidate_ious.std(0)  # unbiased std, as the official code
    is_positive = candidate_ious >= threshold[None, :]

    anchor_centres = centres(anchors)[candidates]  # [C, G, 2]
    inside = torch.stack([
        anchor_centres[..., 0] - boxes[:, 0], anchor_centres[..., 1] - boxes[:, 1],
        boxes[:, 2] - anchor_centres[..., 0], boxes[:, 3] - anchor_centres[..., 1],
    ], dim=-1).min(dim=-1).values > 0.01
    is_positive &= inside

    # An anchor claimed by several boxes goes to the one with the highest IoU.
    claimed = torch.full((num_boxes, num_anchors), float("-inf"), device=anchors.device)  # [G, A]
    rows = box_index[None, :].expand_as(candidates)[is_positive]
    cols = candidates[is_positive]
    claimed[rows, cols] = ious.t()[rows, cols]
    best_iou, best_box = claimed.max(dim=0)  # [A]
    best_box[best_iou == float("-inf")] = NO_MATCH
    return Assignment(best_box)
