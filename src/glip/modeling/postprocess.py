"""ATSS post-processing: phrase scores from token scores, candidates, decoding, class-aware NMS.

The steps and conventions are the official test-time ones (candidate threshold on the phrase score,
top-k per level by score x centerness, score = sqrt(phrase score x centerness), boxes clipped to
[0, W-1] x [0, H-1], NMS with "+1" areas, a per-image cap). Phrases are unlimited in number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from glip.config import PostProcessConfig
from glip.modeling.box_coder import BoxCoder
from glip.modeling.head import HeadOutput


@dataclass
class Detections:
    """Detections of one image: boxes [N, 4] xyxy, scores [N], labels [N] (0-based phrase index)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    @staticmethod
    def cat(parts: list["Detections"]) -> "Detections":
        return Detections(torch.cat([p.boxes for p in parts]), torch.cat([p.scores for p in parts]),
                          torch.cat([p.labels for p in parts]))

    def __len__(self) -> int:
        return int(self.scores.numel())

    def select(self, keep: torch.Tensor) -> "Detections":
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def sorted(self) -> "Detections":
        """Highest score first (stable, so equal scores keep their order)."""
        order = torch.sort(self.scores, descending=True, stable=True).indices
        return self.select(order)

    def rescaled(self, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> "Detections":
        """Scale boxes from one image size (h, w) to another, e.g. network input -> original."""
        ratio_w = to_hw[1] / from_hw[1]
        ratio_h = to_hw[0] / from_hw[0]
        scale = torch.tensor([ratio_w, ratio_h, ratio_w, ratio_h], dtype=self.boxes.dtype, device=self.boxes.device)
        return Detections(self.boxes * scale, self.scores, self.labels)


def phrase_scores(token_probs: torch.Tensor, token_indices: list[list[int]]) -> torch.Tensor:
    """token_probs: [N, L] sigmoid scores -> [N, P] mean over each phrase's tokens."""
    num_tokens = token_probs.shape[1]
    membership = torch.zeros(num_tokens, len(token_indices), dtype=token_probs.dtype, device=token_probs.device)
    for phrase, tokens in enumerate(token_indices):
        membership[tokens, phrase] = 1.0
    counts = membership.sum(dim=0)  # [P]
    return (token_probs @ membership) / counts


class PostProcessor:
    def __init__(self, config: PostProcessConfig, box_coder: BoxCoder | None = None) -> None:
        self.config = config
        self.box_coder = box_coder or BoxCoder()

    def candidates(self, head: HeadOutput, anchors: list[torch.Tensor], token_indices: list[list[int]],
                   image_index: int, image_hw: tuple[int, int], label_offset: int = 0) -> Detections:
        """Pre-NMS candidates of one image for one prompt, all levels, in network-input pixels."""
        parts = []
        for level, level_anchors in enumerate(anchors):
            probs = head.token_logits[level][image_index].sigmoid()  # [HW, L]
            scores = phrase_scores(probs, token_indices)  # [HW, P]
            centerness = head.centerness[level][image_index].reshape(-1).sigmoid()  # [HW]
            deltas = head.box_regression[level][image_index].reshape(4, -1).t()  # [HW, 4]
            is_candidate = scores > self.config.candidate_threshold
            top_n = min(int(is_candidate.sum()), self.config.pre_nms_top_n)
            ranked = (scores * centerness[:, None])[is_candidate]
            ranked, order = ranked.topk(top_n, sorted=False)
            location_label = is_candidate.nonzero()[order]  # [k, 2] (location, phrase)
            locations = location_label[:, 0]
            boxes = self.box_coder.decode(deltas[locations], level_anchors[locations])
            boxes = clip_boxes(boxes, image_hw)
            detections = Detections(boxes, torch.sqrt(ranked), location_label[:, 1] + label_offset)
            parts.append(detections.select(self._large_enough(boxes)))
        return Detections.cat(parts)

    def _large_enough(self, boxes: torch.Tensor) -> torch.Tensor:
        widths = boxes[:, 2] - boxes[:, 0] + 1
        heights = boxes[:, 3] - boxes[:, 1] + 1
        return (widths >= self.config.min_size) & (heights >= self.config.min_size)

    def select(self, candidates: Detections) -> Detections:
        """Class-aware NMS ("+1" IoU, suppress when IoU > threshold), then the per-image cap."""
        keep = legacy_nms(candidates.boxes, candidates.scores, candidates.labels, self.config.nms_threshold)
        kept = candidates.select(keep)
        limit = self.config.detections_per_image
        if 0 < limit < len(kept):
            threshold = torch.kthvalue(kept.scores.cpu(), len(kept) - limit + 1).values.item()
            kept = kept.select(kept.scores >= threshold)
        return kept.sorted()


def legacy_iou(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] xyxy -> [N, N] IoU with the legacy "+1" widths, in the official kernel's arithmetic
    (the order of float operations matters for pairs at exactly the threshold, which are common
    because anchors sit on a regular grid)."""
    left = torch.maximum(boxes[:, None, 0], boxes[None, :, 0])
    right = torch.minimum(boxes[:, None, 2], boxes[None, :, 2])
    top = torch.maximum(boxes[:, None, 1], boxes[None, :, 1])
    bottom = torch.minimum(boxes[:, None, 3], boxes[None, :, 3])
    width = (right - left + 1).clamp(min=0)
    height = (bottom - top + 1).clamp(min=0)
    intersection = width * height
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return intersection / (area[:, None] + area[None, :] - intersection)


def legacy_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy class-aware NMS: within each label, by descending score, drop every box whose "+1" IoU
    with an already kept box is > threshold. Returns kept indices in ascending order."""
    kept = []
    for label in torch.unique(labels):
        members = (labels == label).nonzero().flatten()
        members = members[torch.sort(scores[members], descending=True, stable=True).indices]
        overlaps = (legacy_iou(boxes[members].float()) > threshold).cpu().numpy()  # [n, n]
        suppressed = np.zeros(len(members), dtype=bool)
        for row in range(len(members)):
            if not suppressed[row]:
                kept.append(int(members[row]))
                suppressed |= overlaps[row]
    return torch.tensor(sorted(kept), dtype=torch.long, device=boxes.device)


def clip_boxes(boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Clip xyxy boxes to [0, W-1] x [0, H-1]."""
    h, w = image_hw
    x = boxes[:, 0::2].clamp(min=0, max=w - 1)
    y = boxes[:, 1::2].clamp(min=0, max=h - 1)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


def one_name_per_object(detections: Detections, iou_threshold: float = 0.5) -> Detections:
    """Each object once, under its best-scoring name: a class-agnostic pass after the class-aware NMS.

    The class-aware NMS (the official behaviour, which the AP protocols need) keeps one box per
    object *and name*, so an object the model half-confuses shows up under several names. By
    descending score, a box whose IoU with an already kept box of *another* name is
    > ``iou_threshold`` is dropped, so the best-scoring name wins. Boxes of the same name are left
    alone (the class-aware NMS has already decided between them). Apply it to the thresholded
    detections that a user sees, not to the candidates an evaluation scores.

    Args:
        detections: boxes [N, 4] xyxy, scores [N], labels [N], in any order; any device and dtype.
        iou_threshold: drop a box whose IoU with a kept box of another name is above it, in [0, 1].
            0.5 was chosen on ``benchmarks/first_picture.py`` (README, "One name per object"): at the
            default score threshold it loses no object there, and lower values start to.

    Returns:
        The kept detections, highest score first (stable for equal scores), on the same device and
        with the same dtypes.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0], [20.0, 20.0, 30.0, 30.0]])
        >>> kept = one_name_per_object(Detections(boxes, torch.tensor([0.5, 0.6, 0.4]), torch.tensor([0, 1, 0])))
        >>> kept.labels.tolist(), kept.scores.tolist()
        ([1, 0], [0.6000000238418579, 0.4000000059604645])
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within [0, 1], got {iou_threshold}")
    ranked = detections.sorted()
    if len(ranked) < 2:
        return ranked
    overlaps = box_iou(ranked.boxes.float(), ranked.boxes.float()) > iou_threshold  # [N, N]
    other_name = ranked.labels[:, None] != ranked.labels[None, :]  # [N, N]
    conflicts = (overlaps & other_name).cpu().numpy()
    kept = np.zeros(len(ranked), dtype=bool)
    for row in range(len(ranked)):
        kept[row] = not conflicts[row, :row][kept[:row]].any()
    return ranked.select(torch.from_numpy(kept).to(ranked.boxes.device))
