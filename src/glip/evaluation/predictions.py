"""Predictions files: COCO results format for detection, the same with ``phrase_index`` for grounding.

Detection (the format of ``COCO.loadRes`` and of every COCO leaderboard)::

    [{"image_id": 42, "category_id": 18, "bbox": [x, y, w, h], "score": 0.93}, ...]

A detection may carry its instance mask as ``segmentation``, COCO RLE of the image's size
(``{"size": [h, w], "counts": "..."}``, see `glip.data.masks.mask_to_rle`; list counts are
accepted and compressed): then every detection of the file must carry one, and mask AP is
computed beside box AP (`glip.evaluation.detection_metrics`).

Grounding: the same records with ``phrase_index`` (0-based, the order of the phrases of the
record as `glip.evaluation.grounding_data` reads them: order of first appearance) instead of
``category_id``. ``image_id`` is the record's id (the COCO image id, or the JSON Lines record's
``image_id``, else its ``filename``).

A record naming an unknown image, category or phrase, or with a malformed box or score, is an
`EvaluationError` with counts: never dropped quietly.

Boxes of the model go out as ``[x1, y1, x2 - x1 + 1, y2 - y1 + 1]`` for detection: our boxes keep
the official "+1" pixel convention (clipped to ``W - 1``), and the official COCO export
(maskrcnn-benchmark ``BoxList.convert("xywh")``) adds the 1, so AP matches the official numbers.
Grounding boxes go out as ``[x1, y1, x2 - x1, y2 - y1]``: the official Flickr30K evaluation
compares the xyxy boxes directly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from glip.data.masks import check_segmentation, segmentation_to_rle
from glip.data.validation import DataError, RecordErrors
from glip.evaluation.common import EvaluationError, fault_collector, is_id, is_number, read_json

# Added to the width and height of a model's xyxy box in COCO results (see the module docstring).
DETECTION_WIDTH_OFFSET = 1.0


def load_predictions(path: str | os.PathLike) -> list:
    """Read a predictions JSON file: a list of records (or ``{"annotations": [...]}``)."""
    data = read_json(path, "predictions file")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise EvaluationError(f"{path}: a predictions file is a JSON list of records in COCO results format")
    return data


def save_predictions(predictions: Sequence[dict], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(predictions)) + "\n", encoding="utf-8")
    return path


def _check_box_and_score(record: dict, faults: RecordErrors, where: object) -> bool:
    box = record.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(is_number(v) for v in box) \
            or box[2] < 0 or box[3] < 0:
        faults.add("bbox that is not [x, y, w, h] with w, h >= 0", where)
        return False
    if not is_number(record.get("score")):
        faults.add("score that is not a finite number", where)
        return False
    return True


def _unknown_id_hint(value: object, known_as_text: set[str]) -> str:
    if str(value) in known_as_text:
        return "ids are compared with their type: '1' is not 1"
    return "not in the annotation file"


def _check_mask(record: dict, size: tuple[int | None, int | None], faults: RecordErrors, where: object) -> bool:
    """A detection's ``segmentation``: COCO RLE of the image's ``(width, height)`` when known."""
    segmentation = record["segmentation"]
    if not isinstance(segmentation, dict):
        faults.add("segmentation that is not COCO RLE", where, "predicted masks are RLE {'size': [h, w], 'counts'}: "
                   "see glip.data.masks.mask_to_rle")
        return False
    try:
        check_segmentation(segmentation, *size)
    except DataError as error:
        faults.add("malformed segmentation", f"{where}: {error}")
        return False
    return True


def check_detection_predictions(predictions: Sequence, image_ids: set, category_ids: set,
                                source: str = "predictions",
                                image_sizes: dict | None = None) -> list[dict]:
    """Check COCO results against the dataset's ids; return clean copies.

    ``image_sizes``: ``{image_id: (width, height)}`` (None where unknown), which predicted masks
    must have; masks come back as compressed RLE (``counts`` a str).

    Raises:
        EvaluationError: with a count of each fault (unknown image ids, unknown category ids,
            malformed boxes, scores or masks, masks on some detections only) and the first
            offenders.
    """
    faults = fault_collector(source)
    images_as_text = {str(i) for i in image_ids}
    categories_as_text = {str(c) for c in category_ids}
    checked, positions = [], []
    for position, record in enumerate(predictions):
        if not isinstance(record, dict):
            faults.add("value that is not a JSON object", position)
            continue
        if not is_id(record.get("image_id")) or record["image_id"] not in image_ids:
            faults.add("unknown image id", record.get("image_id"), _unknown_id_hint(record.get("image_id"),
                                                                                   images_as_text))
            continue
        if not is_id(record.get("category_id")) or record["category_id"] not in category_ids:
            faults.add("unknown category id", record.get("category_id"),
                       _unknown_id_hint(record.get("category_id"), categories_as_text))
            continue
        if not _check_box_and_score(record, faults, position):
            continue
        clean = {"image_id": record["image_id"], "category_id": record["category_id"],
                 "bbox": [float(v) for v in record["bbox"]], "score": float(record["score"])}
        if record.get("segmentation") is not None:
            if not _check_mask(record, (image_sizes or {}).get(record["image_id"], (None, None)), faults, position):
                continue
            height, width = record["segmentation"]["size"]
            clean["segmentation"] = segmentation_to_rle(record["segmentation"], height, width)
        checked.append(clean)
        positions.append(position)
    if any("segmentation" in record for record in checked):
        for position, record in zip(positions, checked):
            if "segmentation" not in record:
                faults.add("missing segmentation (other detections have one)", position,
                           "give every detection a mask, or none (box AP only)")
    faults.raise_if_any()
    return checked


def check_grounding_predictions(predictions: Sequence, num_phrases: dict, source: str = "predictions") -> list[dict]:
    """Check grounding results: ``num_phrases`` maps each record id to its number of phrases."""
    faults = fault_collector(source)
    ids_as_text = {str(i) for i in num_phrases}
    checked = []
    for position, record in enumerate(predictions):
        if not isinstance(record, dict):
            faults.add("value that is not a JSON object", position)
            continue
        image_id = record.get("image_id")
        if not is_id(image_id) or image_id not in num_phrases:
            faults.add("unknown image id", image_id, _unknown_id_hint(image_id, ids_as_text))
            continue
        phrase = record.get("phrase_index")
        if not isinstance(phrase, int) or isinstance(phrase, bool) or not 0 <= phrase < num_phrases[image_id]:
            faults.add("phrase_index that is not a phrase of its record", f"{image_id!r}: {phrase!r}",
                       "phrase_index is 0-based, in the order phrases first appear in the record")
            continue
        if not _check_box_and_score(record, faults, position):
            continue
        checked.append({"image_id": image_id, "phrase_index": phrase,
                        "bbox": [float(v) for v in record["bbox"]], "score": float(record["score"])})
    faults.raise_if_any()
    return checked


def xyxy_to_detection_bbox(box: Sequence[float]) -> list[float]:
    """Model box (x1, y1, x2, y2) -> COCO results ``[x, y, w, h]`` with the official +1 width."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 3), round(y1, 3), round(x2 - x1 + DETECTION_WIDTH_OFFSET, 3),
            round(y2 - y1 + DETECTION_WIDTH_OFFSET, 3)]


def xyxy_to_grounding_bbox(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)]
