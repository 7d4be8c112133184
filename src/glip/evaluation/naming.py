"""Naming accuracy: is an object's top-scoring name its true category?

Box AP mixes finding objects with naming them. This measure isolates the naming: for every
ground-truth object (crowd boxes left out), the model's detections of its image that overlap it at
IoU >= ``iou_threshold`` are looked at, whatever their name, and the name of the highest-scoring one
is the object's predicted name. The object is named right when that name is its category; an object
no detection overlaps is "missed" (counted as not named right, and in its own column of the
confusion matrix, so finding and naming errors stay apart).

Computed from the detections an AP evaluation already made (`DetectionResult.predictions`, COCO
results with every (box, name) pair above a low threshold), so it costs no extra model run.

Example:
    >>> from glip.evaluation.detection_data import detection_dataset_from_coco
    >>> data = detection_dataset_from_coco({"images": [{"id": 1, "width": 10, "height": 10}],
    ...     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}],
    ...     "categories": [{"id": 1, "name": "star"}, {"id": 2, "name": "heart"}]})
    >>> result = naming_accuracy(data, [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9},
    ...                                 {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.4}])
    >>> result.accuracy, result.confused()
    (0.0, [('star', 'heart', 1)])
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from glip.evaluation.detection_data import DetectionDataset

MISSED = "(missed)"  # the confusion matrix's last column: no detection overlaps the object


@dataclass
class NamingResult:
    names: list[str]  # the dataset's category names, in category order
    confusion: np.ndarray  # [K, K + 1] objects: rows = true category, columns = top name, last = missed
    iou_threshold: float

    @property
    def objects(self) -> int:
        return int(self.confusion.sum())

    @property
    def named_right(self) -> int:
        return int(np.trace(self.confusion[:, :-1]))

    @property
    def missed(self) -> int:
        return int(self.confusion[:, -1].sum())

    @property
    def accuracy(self) -> float:
        """Objects named right / all objects (missed ones included); 0.0 without objects."""
        return self.named_right / self.objects if self.objects else 0.0

    def per_category(self) -> dict[str, float]:
        """Accuracy per true category (categories without objects left out)."""
        totals = self.confusion.sum(axis=1)
        return {name: float(self.confusion[i, i] / totals[i]) for i, name in enumerate(self.names) if totals[i]}

    def confused(self, top: int | None = None) -> list[tuple[str, str, int]]:
        """(true name, top name, objects) for every wrong cell, most frequent first."""
        columns = [*self.names, MISSED]
        cells = [(self.names[i], columns[j], int(self.confusion[i, j]))
                 for i in range(len(self.names)) for j in range(len(columns))
                 if i != j and self.confusion[i, j] > 0]
        cells.sort(key=lambda cell: -cell[2])
        return cells[:top] if top is not None else cells

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "objects": self.objects, "missed": self.missed,
                "iou_threshold": self.iou_threshold, "names": self.names, "missed_column": MISSED,
                "confusion": self.confusion.tolist(), "per_category": self.per_category()}


def _xyxy(boxes: list[list[float]]) -> torch.Tensor:
    """COCO [x, y, w, h] boxes -> [N, 4] xyxy (float64)."""
    tensor = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    return torch.cat([tensor[:, :2], tensor[:, :2] + tensor[:, 2:]], dim=1)


def naming_accuracy(dataset: DetectionDataset, predictions: list[dict], iou_threshold: float = 0.5) -> NamingResult:
    """The confusion of every ground-truth object's true category with its top-scoring overlapping name.

    Args:
        dataset: the ground truth.
        predictions: COCO results (``image_id``, ``category_id``, ``bbox`` [x, y, w, h], ``score``).
        iou_threshold: the least IoU at which a detection counts as being of the object.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    order = {category.id: index for index, category in enumerate(dataset.categories)}
    confusion = np.zeros((len(order), len(order) + 1), dtype=np.int64)
    by_image: dict = defaultdict(list)
    for prediction in predictions:
        by_image[prediction["image_id"]].append(prediction)
    objects: dict = defaultdict(list)
    for annotation in dataset.annotations:
        if not annotation.get("iscrowd", 0):
            objects[annotation["image_id"]].append(annotation)
    for image_id, truths in objects.items():
        found = by_image.get(image_id, [])
        if not found:
            for truth in truths:
                confusion[order[truth["category_id"]], -1] += 1
            continue
        overlaps = box_iou(_xyxy([t["bbox"] for t in truths]), _xyxy([p["bbox"] for p in found]))  # [T, P]
        scores = torch.tensor([p["score"] for p in found], dtype=torch.float64)
        for row, truth in enumerate(truths):
            candidates = overlaps[row] >= iou_threshold
            if not candidates.any():
                confusion[order[truth["category_id"]], -1] += 1
                continue
            best = int(torch.where(candidates, scores, torch.full_like(scores, -torch.inf)).argmax())
            confusion[order[truth["category_id"]], order[found[best]["category_id"]]] += 1
    return NamingResult(names=[c.name for c in dataset.categories], confusion=confusion, iou_threshold=iou_threshold)
