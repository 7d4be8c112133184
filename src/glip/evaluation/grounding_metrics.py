"""Phrase-grounding recall, as in the Flickr30K Entities evaluation of MDETR and GLIP.

For every phrase that has at least one ground-truth box, the predicted boxes of that phrase are
ranked by score (ties: order of the predictions list); the phrase is found at ``k`` when one of its
top ``k`` boxes has IoU >= 0.5 with

- **any box**: any one of the phrase's ground-truth boxes;
- **merged boxes**: the smallest box enclosing all of the phrase's ground-truth boxes.

Recall@k is the fraction of phrases found at ``k``; "upper bound" counts all predicted boxes.
A phrase without any predicted box is a miss. IoU uses continuous coordinates (``x2 - x1``).

Example:
    >>> result = compute_grounding_recall(dataset, predictions)  # doctest: +SKIP
    >>> result.metrics["any_box"]["R@1"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from glip.evaluation.common import EvaluationError, json_ready
from glip.evaluation.grounding_data import GroundingDataset

PROTOCOLS = ("any_box", "merged_boxes")


@dataclass
class GroundingResult:
    """Recall@k per protocol (fractions), and the counts behind them."""

    name: str
    metrics: dict[str, dict[str, float]]
    num_records: int
    num_phrases: int
    num_predictions: int
    iou_threshold: float
    notes: list[str] = field(default_factory=list)
    timing: dict | None = None
    task: str = "grounding"
    predictions: list[dict] | None = field(default=None, repr=False)  # what was evaluated (not in to_dict)

    def to_dict(self) -> dict:
        return json_ready({f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"})


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """``[N, 4]`` x ``[M, 4]`` xyxy -> ``[N, M]`` IoU (continuous coordinates)."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # [N, M, 2]
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # [N, M, 2]
    wh = np.clip(bottom_right - top_left, 0, None)
    intersection = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def merge_boxes(boxes: np.ndarray) -> np.ndarray:
    """``[N, 4]`` -> ``[1, 4]``: the smallest box enclosing them all."""
    return np.array([[boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]])


def compute_grounding_recall(dataset: GroundingDataset, predictions: Sequence[dict],
                             ks: Sequence[int] = (1, 5, 10), iou_threshold: float = 0.5) -> GroundingResult:
    """Recall@k of checked grounding predictions (see `check_grounding_predictions`)."""
    ranked: dict = defaultdict(list)  # (record id, phrase) -> [(score, position, box xyxy)]
    for position, p in enumerate(predictions):
        x, y, w, h = p["bbox"]
        ranked[p["image_id"], p["phrase_index"]].append((-p["score"], position, (x, y, x + w, y + h)))
    labels = [f"R@{k}" for k in ks] + ["upper_bound"]
    found = {protocol: dict.fromkeys(labels, 0) for protocol in PROTOCOLS}
    num_phrases = 0
    for record in dataset.records:
        for phrase in sorted(set(record.box_phrases)):
            num_phrases += 1
            candidates = sorted(ranked.get((record.id, phrase), []))
            if not candidates:
                continue
            boxes = np.array([c[2] for c in candidates], dtype=np.float64)  # [P, 4] best first
            truth = record.phrase_boxes(phrase)
            for protocol, targets in (("any_box", truth), ("merged_boxes", merge_boxes(truth))):
                best = box_iou(boxes, targets).max(axis=1)  # [P]
                hits = best >= iou_threshold
                for k, label in zip(ks, labels):
                    found[protocol][label] += bool(hits[:k].any())
                found[protocol]["upper_bound"] += bool(hits.any())
    if num_phrases == 0:
        raise EvaluationError(f"{dataset.source}: no phrase with a ground-truth box to evaluate: recall is undefined")
    metrics = {protocol: {label: count / num_phrases for label, count in counts.items()}
               for protocol, counts in found.items()}
    notes = []
    ungrounded = sum(r.num_phrases - len(set(r.box_phrases)) for r in dataset.records)
    if ungrounded:
        notes.append(f"{ungrounded} phrases have no ground-truth box and are not counted")
    return GroundingResult(dataset.name, metrics, len(dataset.records), num_phrases, len(predictions),
                           iou_threshold, notes)
