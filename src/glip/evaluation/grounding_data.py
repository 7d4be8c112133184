"""Phrase-grounding ground truth (Flickr30K Entities style) in the two formats of the training data.

**ODVG JSON Lines**, one caption per line, parsed by `glip.data.grounding.read_odvg_line` as in
training::

    {"filename": "a.jpg", "height": 480, "width": 640, "image_id": 7,
     "grounding": {"caption": "a red star and a blue ring",
                   "regions": [{"bbox": [10, 20, 50, 60], "phrase": "a red star", "tokens_positive": [[0, 10]]}]}}

**MDETR COCO JSON** (e.g. ``final_flickr_separateGT_test.json``): ``images`` carry ``caption``,
``annotations`` carry ``bbox`` ``[x, y, w, h]`` and ``tokens_positive``; the file is read and
checked by `glip.data.coco_json.read_coco`, the reader of every COCO file.

Boxes with the same spans are one phrase (`glip.data.grounding.group_regions`, as in training);
phrases are numbered in order of first appearance: that number is ``phrase_index`` in predictions.
The unit of evaluation is one record (one image *and* caption); its id is the COCO image id, or the
line's ``id``, else its ``image_id``, else its ``filename`` (give each line an ``id`` when several
captions share an image).

The records are checked by the training readers' checks, but a faulty record is never skipped (it
would change the recall's denominator): every fault is counted and reported in one
`EvaluationError` (the ``"raise_all"`` policy of `glip.data.validation.RecordErrors`). Image files are not
needed to read the ground truth (only to run a model), so sizes must be in the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glip.data.coco_json import CocoAnnotation, CocoImage, read_coco, xywh_to_xyxy
from glip.data.grounding import group_regions, read_odvg_line
from glip.data.validation import DataError
from glip.evaluation.common import EvaluationError, fault_collector, read_json

logger = logging.getLogger(__name__)

Span = tuple[int, int]


@dataclass
class GroundingRecord:
    """One caption of one image, with its phrases and their ground-truth boxes.

    Attributes:
        phrase_spans: per phrase, its ``[start, end)`` character spans in ``caption``.
        boxes: ``[N, 4]`` float64 ``x1, y1, x2, y2`` in the image's pixels.
        box_phrases: per box, the index of its phrase.
    """

    id: int | str
    file_name: str
    width: int
    height: int
    caption: str
    phrase_spans: list[list[Span]]
    boxes: np.ndarray
    box_phrases: list[int]

    @property
    def num_phrases(self) -> int:
        return len(self.phrase_spans)

    def phrase_text(self, index: int) -> str:
        return " ".join(self.caption[s:e] for s, e in self.phrase_spans[index])

    def phrase_boxes(self, index: int) -> np.ndarray:
        return self.boxes[[i for i, p in enumerate(self.box_phrases) if p == index]].reshape(-1, 4)


@dataclass
class GroundingDataset:
    name: str
    records: list[GroundingRecord]
    image_dir: Path | None = None
    source: str = "<memory>"

    def image_path(self, record: GroundingRecord) -> Path:
        return Path(self.image_dir or ".") / record.file_name

    def missing_images(self) -> list[GroundingRecord]:
        return [r for r in self.records if not self.image_path(r).is_file()]

    def num_grounded_phrases(self) -> int:
        return sum(len(set(r.box_phrases)) for r in self.records)


def load_grounding_dataset(path: str | os.PathLike, image_dir: str | os.PathLike | None = None,
                           name: str | None = None, data: object = None) -> GroundingDataset:
    """Read a grounding JSON Lines (``.jsonl``) or MDETR COCO JSON file; see the module docstring.

    ``data``: the file's JSON when the caller has read it already (MDETR JSON only).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        records = _read_jsonl(path)
    else:
        records = _read_mdetr(path, read_json(path, "annotation file") if data is None else data)
    if not records:
        raise EvaluationError(f"{path}: no records: nothing to evaluate")
    duplicates = fault_collector(str(path))
    seen: set = set()
    for record in records:
        if record.id in seen:
            duplicates.add("duplicate image id", record.id,
                           "each record (image and caption) needs its own id: give JSON Lines records an 'id'")
        seen.add(record.id)
    duplicates.raise_if_any()
    if not any(r.box_phrases for r in records):
        raise EvaluationError(f"{path}: no phrase has a ground-truth box: recall is undefined")
    return GroundingDataset(name or path.stem.replace(".odvg", ""), records,
                            Path(image_dir) if image_dir is not None else path.parent, str(path))


def _recorded_size(width: int | None, height: int | None) -> tuple[int, int]:
    """Boxes are compared without opening the image, so its size must be in the file."""
    if width is None or height is None:
        raise DataError("needs a positive integer 'width' and 'height' (the image is not opened to read them)",
                        "no image size")
    return width, height


def _odvg_record(text: str) -> GroundingRecord:
    line = read_odvg_line(text)
    width, height = _recorded_size(line.width, line.height)
    phrase_spans, boxes, box_phrases = group_regions(line.caption, line.regions, width, height)
    key = "id" if "id" in line.record else "image_id"
    image_id = line.record.get(key, line.file_name)
    if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
        raise DataError(f"'{key}' {image_id!r} is not an integer or a string", "bad image id")
    return GroundingRecord(image_id, line.file_name, width, height, line.caption, phrase_spans,
                           boxes.astype(np.float64), box_phrases)


def _read_jsonl(path: Path) -> list[GroundingRecord]:
    if not path.is_file():
        raise EvaluationError(f"annotation file {str(path)!r} does not exist")
    faults = fault_collector(str(path))
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(_odvg_record(line))
            except DataError as error:
                faults.reject(f"{path}:{number}", error, f"line {number}: {error}")
    faults.raise_if_any()
    return records


def _read_mdetr(path: Path, data: object) -> list[GroundingRecord]:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise EvaluationError(f"{path}: not MDETR COCO JSON (needs an 'images' list with captions)")
    faults = fault_collector(str(path))
    coco = read_coco(data, faults, needs_categories=False)
    by_image = coco.annotations_by_image()
    records = []
    for image in coco.images:
        try:
            records.append(_mdetr_record(image, by_image.get(image.id, [])))
        except DataError as error:
            faults.reject(f"{path}#image {image.id}", error, f"image {image.id!r}: {error}")
    faults.raise_if_any()
    return records


def _mdetr_record(image: CocoImage, annotations: list[CocoAnnotation]) -> GroundingRecord:
    if image.file_name is None:
        raise DataError("image record has no 'file_name'", "image without 'file_name'")
    caption = image.record.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise DataError("image record has no 'caption'", "image without 'caption'")
    width, height = _recorded_size(image.width, image.height)
    pairs = [(a.record.get("tokens_positive"), xywh_to_xyxy(a.bbox)) for a in annotations if not a.iscrowd]
    phrase_spans, boxes, box_phrases = group_regions(caption, pairs, width, height)
    return GroundingRecord(image.id, image.file_name, width, height, caption, phrase_spans,
                           boxes.astype(np.float64), box_phrases)
