"""Box and mask AP through pycocotools: the COCO protocol, LVIS (federated, frequency split), fixed AP.

Matching, interpolation and averaging are pycocotools' own (`COCOeval.evaluate` and
`accumulate`); only these are added around it:

**COCO** (``DetectionProtocol.coco()``): pycocotools unchanged, ``maxDets = (1, 10, 100)`` per
image and category. AP, AP50, AP75, APs/m/l and AR@1/10/100, ARs/m/l@100 are read from the
``precision`` / ``recall`` arrays exactly as ``COCOeval.summarize`` does (mean over the entries
that are not -1), so they equal ``COCOeval.stats``.

**LVIS** (``DetectionProtocol.lvis()``, the lvis-api rules):

- at most 300 detections per image over all categories (highest scores kept) before matching;
- federated images (``neg_category_ids`` present): a detection of a category that is neither
  annotated in the image nor listed as absent is dropped; an unmatched detection of a category in
  ``not_exhaustive_category_ids`` is ignored (neither true nor false positive);
- APr, APc, APf: mean AP over the categories of each ``frequency``.

**Fixed AP** (``DetectionProtocol.fixed_ap(k)``, Dave et al. 2021, "Evaluating large-vocabulary
object detectors: the devil is in the details"): no per-image cap; for each category the ``k``
(10,000) highest-scoring detections over the whole dataset are kept and the rest dropped, then
pycocotools runs with an unlimited ``maxDets``. The LVIS federated rules still apply on an LVIS file.

Ties at a cut keep the detections that come first in the predictions list (stable sort), and the
cuts are made in the order: per image, then per category, then the federated filter.

**Mask AP**: when the detections carry masks (``segmentation``, COCO RLE) and every evaluated
ground-truth box has a ``segmentation`` (polygons or RLE), the same detections are evaluated again
with pycocotools' ``iouType="segm"`` (mask IoU instead of box IoU; the same protocol, federated
rules included): ``DetectionResult.mask_metrics`` and ``mask_AP``, ``mask_AP50``, ``mask_AP75``
per category. Areas (small / medium / large) are the ground truth's ``area`` for both.

Example:
    >>> result = compute_detection_metrics(dataset, predictions)  # doctest: +SKIP
    >>> result.metrics["AP"], result.per_category[0]["AP"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from glip.data.masks import segmentation_to_rle
from glip.evaluation.common import EvaluationError, json_ready
from glip.evaluation.detection_data import FREQUENCIES, DetectionDataset, ImageId

# maxDets standing for "no cap" (pycocotools needs a number).
UNLIMITED = 2**31 - 1
AREA_NAMES = ("all", "small", "medium", "large")  # the order of pycocotools' areaRng


@dataclass(frozen=True)
class DetectionProtocol:
    """Which detections count.

    Attributes:
        name: "coco", "lvis" or "fixed-ap" (reported).
        max_dets: pycocotools ``maxDets``: caps per image *and category*; AP uses the last.
        per_image_limit: keep the best ``n`` per image over all categories before matching.
        per_category_limit: keep the best ``n`` per category over the whole dataset.
    """

    name: str = "coco"
    max_dets: tuple[int, ...] = (1, 10, 100)
    per_image_limit: int | None = None
    per_category_limit: int | None = None

    @classmethod
    def coco(cls) -> "DetectionProtocol":
        return cls()

    @classmethod
    def lvis(cls, per_image_limit: int = 300) -> "DetectionProtocol":
        return cls("lvis", (UNLIMITED,), per_image_limit, None)

    @classmethod
    def fixed_ap(cls, per_category_limit: int = 10_000) -> "DetectionProtocol":
        if per_category_limit < 1:
            raise ValueError(f"the fixed-AP cap per category must be >= 1, got {per_category_limit}")
        return cls("fixed-ap", (UNLIMITED,), None, per_category_limit)

    def describe(self) -> dict:
        data = asdict(self)
        data["max_dets"] = ["all" if m == UNLIMITED else m for m in self.max_dets]
        return data


def default_protocol(dataset: DetectionDataset, fixed_ap: bool = False,
                     per_category_limit: int = 10_000) -> DetectionProtocol:
    """Fixed AP when asked, LVIS for a file with frequencies or federated labels, else COCO."""
    if fixed_ap:
        return DetectionProtocol.fixed_ap(per_category_limit)
    if dataset.has_frequencies or dataset.is_federated:
        return DetectionProtocol.lvis()
    return DetectionProtocol.coco()


@dataclass
class DetectionResult:
    """Every number of one detection evaluation (fractions in [0, 1]; ``None`` = undefined).

    Attributes:
        metrics: AP, AP50, AP75, APs, APm, APl, (APr, APc, APf), AR@n, ARs/m/l@n.
        per_category: per category: id, name, frequency, num_gt, num_predictions, AP, AP50, AP75
            (and mask_AP, mask_AP50, mask_AP75 with mask AP).
        precision_recall: ``recall`` (the 101 thresholds) and, per category id, the interpolated
            precision at IoU 0.50 (``"iou50"``) and averaged over IoU 0.50:0.95 (``"mean"``).
    """

    name: str
    protocol: dict
    metrics: dict[str, float | None]
    per_category: list[dict]
    precision_recall: dict
    num_images: int
    num_predictions: int
    notes: list[str] = field(default_factory=list)
    timing: dict | None = None
    task: str = "detection"
    predictions: list[dict] | None = field(default=None, repr=False)  # what was evaluated (not in to_dict)
    mask_metrics: dict[str, float | None] | None = None  # the same keys for mask IoU; None: no mask AP

    @property
    def ap(self) -> float | None:
        return self.metrics.get("AP")

    def to_dict(self) -> dict:
        return json_ready({f.name: getattr(self, f.name) for f in fields(self) if f.name != "predictions"})


def limit_detections(predictions: Sequence[dict], protocol: DetectionProtocol) -> list[dict]:
    """Apply the protocol's per-image then per-category caps (stable: earlier entries win ties)."""
    kept = list(predictions)
    for limit, key in ((protocol.per_image_limit, "image_id"), (protocol.per_category_limit, "category_id")):
        if limit is None:
            continue
        groups: dict = defaultdict(list)
        for index, prediction in enumerate(kept):
            groups[prediction[key]].append(index)
        keep = np.zeros(len(kept), dtype=bool)
        for indices in groups.values():
            scores = np.array([kept[i]["score"] for i in indices], dtype=np.float64)
            order = np.argsort(-scores, kind="mergesort")[:limit]
            keep[np.asarray(indices)[order]] = True
        kept = [p for p, k in zip(kept, keep) if k]
    return kept


def _coco_object(data: dict):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _build_evaluator(coco_gt, coco_dt, dataset: DetectionDataset, iou_type: str = "bbox"):
    """A COCOeval that applies the LVIS federated rules when the dataset has them."""
    from pycocotools.cocoeval import COCOeval

    negatives = dataset.negative_category_ids
    not_exhaustive = dataset.not_exhaustive_category_ids

    class FederatedCOCOeval(COCOeval):
        def _prepare(self) -> None:
            super()._prepare()
            positives = defaultdict(set)
            for image_id, category_id in list(self._gts):
                if self._gts[image_id, category_id]:
                    positives[image_id].add(category_id)
            for image_id, category_id in list(self._dts):
                if image_id in negatives and category_id not in negatives[image_id] \
                        and category_id not in positives[image_id]:
                    del self._dts[image_id, category_id]

        def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802, N803 - pycocotools' names
            result = super().evaluateImg(imgId, catId, aRng, maxDet)
            if result is not None and catId in not_exhaustive.get(imgId, ()):
                unmatched = result["dtMatches"] == 0  # [T, D]
                result["dtIgnore"] = np.logical_or(result["dtIgnore"], unmatched)
            return result

    return (FederatedCOCOeval if negatives else COCOeval)(coco_gt, coco_dt, iou_type)


def _mean_valid(values: np.ndarray) -> float | None:
    """pycocotools' summary: the mean of the entries > -1, ``None`` when there is none."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def compute_detection_metrics(
    dataset: DetectionDataset,
    predictions: Sequence[dict],
    protocol: DetectionProtocol | None = None,
    image_ids: set[ImageId] | None = None,
) -> DetectionResult:
    """Box AP (and mask AP, see the module docstring) of checked COCO-format ``predictions``.

    Args:
        dataset: the ground truth.
        predictions: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` records, with
            ``"segmentation"`` (compressed RLE) on every one or none (see `check_detection_predictions`).
        protocol: default `default_protocol` (COCO, or LVIS for an LVIS file).
        image_ids: evaluate on these images only (default: all of the dataset's).
    """
    protocol = protocol or default_protocol(dataset)
    evaluated = image_ids if image_ids is not None else {i.id for i in dataset.images}
    if not evaluated:
        raise EvaluationError(f"{dataset.source}: no image to evaluate")
    detections = limit_detections([p for p in predictions if p["image_id"] in evaluated], protocol)
    ground_truth = dataset.coco_ground_truth(evaluated)
    evaluator = _evaluate(dataset, ground_truth, _results(ground_truth, detections), evaluated, protocol, "bbox")
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    recall = evaluator.eval["recall"]  # [T, K, A, M]
    category_order = list(evaluator.params.catIds)
    metrics = _summaries(precision, recall, evaluator.params, dataset, category_order)
    per_category, curves = _per_category(precision, evaluator.params, dataset, category_order, detections)
    notes = _notes(dataset, protocol, per_category, len(evaluated))
    mask_metrics = None
    if predictions and all("segmentation" in p for p in predictions):
        mask_truth, lacking = _mask_ground_truth(ground_truth)
        if lacking:
            notes.append(f"no mask AP: the detections carry masks but {lacking} of the "
                         f"{len(ground_truth['annotations'])} ground-truth boxes have no segmentation")
        else:
            mask_metrics = _mask_ap(dataset, mask_truth, detections, evaluated, protocol, per_category)
    return DetectionResult(
        name=dataset.name, protocol=protocol.describe(), metrics=metrics, per_category=per_category,
        precision_recall={"recall": evaluator.params.recThrs.round(2).tolist(), "categories": curves},
        num_images=len(evaluated), num_predictions=len(detections), notes=notes, mask_metrics=mask_metrics,
    )


def _results(ground_truth: dict, detections: list[dict], masks: bool = False) -> dict:
    """The detections as a pycocotools results dict (with their masks for ``iouType="segm"``)."""
    from pycocotools import mask as coco_mask

    results = {key: ground_truth[key] for key in ("images", "categories")}
    annotations = []
    for index, d in enumerate(detections):
        record = {"id": index + 1, "image_id": d["image_id"], "category_id": d["category_id"],
                  "bbox": list(d["bbox"]), "score": float(d["score"]),
                  "area": float(d["bbox"][2]) * float(d["bbox"][3]), "iscrowd": 0}
        if masks:
            record["segmentation"] = d["segmentation"]
            record["area"] = float(coco_mask.area(d["segmentation"]))  # as COCO.loadRes sets it
        annotations.append(record)
    results["annotations"] = annotations
    return results


def _evaluate(dataset: DetectionDataset, ground_truth: dict, results: dict, evaluated: set,
              protocol: DetectionProtocol, iou_type: str):
    """pycocotools' evaluate and accumulate; the evaluator, with ``eval`` filled."""
    evaluator = _build_evaluator(_coco_object(ground_truth), _coco_object(results), dataset, iou_type)
    evaluator.params.imgIds = sorted(evaluated)
    evaluator.params.catIds = sorted(dataset.category_ids)
    evaluator.params.maxDets = sorted(protocol.max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _mask_ground_truth(ground_truth: dict) -> tuple[dict, int]:
    """The ground truth with every segmentation as compressed RLE, and how many boxes lack one.

    Polygons need the image's size; an image of unknown size is an `EvaluationError`.
    """
    sizes = {image["id"]: (image["height"], image["width"]) for image in ground_truth["images"]}
    annotations, lacking = [], 0
    for annotation in ground_truth["annotations"]:
        segmentation = annotation.get("segmentation")
        if segmentation is None:
            lacking += 1
            continue
        height, width = sizes[annotation["image_id"]]
        if isinstance(segmentation, dict):
            height, width = segmentation["size"]
        elif height is None or width is None:
            raise EvaluationError(f"image {annotation['image_id']!r} has polygon masks but no 'width' and "
                                  "'height': give its size in the annotation file for mask AP")
        annotations.append(dict(annotation, segmentation=segmentation_to_rle(segmentation, height, width)))
    return dict(ground_truth, annotations=annotations), lacking


def _mask_ap(dataset: DetectionDataset, mask_truth: dict, detections: list[dict], evaluated: set,
             protocol: DetectionProtocol, per_category: list[dict]) -> dict[str, float | None]:
    """Mask AP of the detections; adds ``mask_AP``, ``mask_AP50``, ``mask_AP75`` to ``per_category``."""
    evaluator = _evaluate(dataset, mask_truth, _results(mask_truth, detections, masks=True), evaluated,
                          protocol, "segm")
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    category_order = list(evaluator.params.catIds)
    rows, _ = _per_category(precision, evaluator.params, dataset, category_order, detections)
    for row, mask_row in zip(per_category, rows):
        row.update({f"mask_{key}": mask_row[key] for key in ("AP", "AP50", "AP75")})
    return _summaries(precision, evaluator.eval["recall"], evaluator.params, dataset, category_order)


def _summaries(precision: np.ndarray, recall: np.ndarray, params, dataset: DetectionDataset,
               category_order: list) -> dict[str, float | None]:
    iou50 = int(np.argmin(np.abs(params.iouThrs - 0.50)))
    iou75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))
    last = len(params.maxDets) - 1
    metrics: dict[str, float | None] = {
        "AP": _mean_valid(precision[:, :, :, 0, last]),
        "AP50": _mean_valid(precision[iou50, :, :, 0, last]),
        "AP75": _mean_valid(precision[iou75, :, :, 0, last]),
        "APs": _mean_valid(precision[:, :, :, 1, last]),
        "APm": _mean_valid(precision[:, :, :, 2, last]),
        "APl": _mean_valid(precision[:, :, :, 3, last]),
    }
    if dataset.has_frequencies:
        frequency_of = {c.id: c.frequency for c in dataset.categories}
        for frequency in FREQUENCIES:
            columns = [k for k, cid in enumerate(category_order) if frequency_of[cid] == frequency]
            metrics[f"AP{frequency}"] = _mean_valid(precision[:, :, columns, 0, last]) if columns else None
    names = ["all" if m == UNLIMITED else str(m) for m in params.maxDets]
    for index, name in enumerate(names):
        metrics[f"AR@{name}"] = _mean_valid(recall[:, :, 0, index])
    for area in (1, 2, 3):
        metrics[f"AR{AREA_NAMES[area][0]}@{names[last]}"] = _mean_valid(recall[:, :, area, last])
    return metrics


def _per_category(precision: np.ndarray, params, dataset: DetectionDataset, category_order: list,
                  detections: list[dict]) -> tuple[list[dict], dict]:
    iou50 = int(np.argmin(np.abs(params.iouThrs - 0.50)))
    iou75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))
    column = {cid: k for k, cid in enumerate(category_order)}
    num_gt: dict = defaultdict(int)
    evaluated = set(params.imgIds)
    for ann in dataset.annotations:
        if not ann["iscrowd"] and ann["image_id"] in evaluated:
            num_gt[ann["category_id"]] += 1
    num_predictions: dict = defaultdict(int)
    for detection in detections:
        num_predictions[detection["category_id"]] += 1
    rows, curves = [], {}
    for category in dataset.categories:
        k = column[category.id]
        table = precision[:, :, k, 0, -1]  # [T, R]
        rows.append({
            "id": category.id, "name": category.name, "prompt": category.prompt.text,
            "frequency": category.frequency, "num_gt": num_gt[category.id],
            "num_predictions": num_predictions[category.id],
            "AP": _mean_valid(table), "AP50": _mean_valid(table[iou50]), "AP75": _mean_valid(table[iou75]),
        })
        if (table > -1).any():
            curves[str(category.id)] = {"iou50": table[iou50].round(4).tolist(),
                                        "mean": table.mean(axis=0).round(4).tolist()}
    return rows, curves


def _notes(dataset: DetectionDataset, protocol: DetectionProtocol, per_category: list[dict],
           num_images: int) -> list[str]:
    notes = []
    undefined = [row["name"] for row in per_category if row["AP"] is None]
    if undefined:
        notes.append(f"{len(undefined)} of {len(per_category)} categories have no ground truth in the "
                     "evaluated images: their AP is undefined and left out of the means")
    if num_images < len(dataset.images):
        notes.append(f"evaluated on {num_images} of the {len(dataset.images)} images of the annotation file")
    if dataset.is_federated:
        notes.append("federated (LVIS) rules: detections of unverified categories dropped, unmatched "
                     "detections of non-exhaustive categories ignored")
    if protocol.per_category_limit is not None:
        notes.append(f"fixed AP: top {protocol.per_category_limit} detections per category over the "
                     "dataset, no per-image cap")
    return notes
