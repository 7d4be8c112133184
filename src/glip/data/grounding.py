"""Phrase-grounding data: captions whose phrases (character spans) are tied to boxes.

Two formats are read:

**ODVG JSON Lines** (the format of Open-GroundingDino and other open-vocabulary detectors), one
image per line, boxes ``[x1, y1, x2, y2]`` in pixels::

    {"filename": "a.jpg", "height": 480, "width": 640,
     "grounding": {"caption": "a red star and a blue ring",
                   "regions": [{"bbox": [10, 20, 50, 60], "phrase": "a red star",
                                "tokens_positive": [[0, 10]]}]}}

Regions with the same ``tokens_positive`` are one phrase with several boxes; a region's ``bbox``
may also be a list of boxes. A region without ``tokens_positive`` is located by its ``phrase``
(first case-insensitive occurrence in the caption). A region may carry its object's instance mask
as ``segmentation``, COCO polygons or RLE (`glip.data.masks`); a region with a list of boxes then
has a list of segmentations, one per box. When every box of a record has one, the training
target gets ``masks``. A simpler variant (no masks) is accepted too, at the top level or under
``grounding``::

    {"filename": "a.jpg", "caption": "...", "phrases": [{"spans": [[0, 10]], "boxes": [[...], ...]}]}

**MDETR COCO JSON** (the GoldG / Flickr30k / RefCOCO files of MDETR and GLIP): ``images`` carry
``caption``, ``annotations`` carry ``bbox`` ``[x, y, w, h]`` and ``tokens_positive``; annotations
of one image with the same spans are one phrase.

Faulty records (box outside the image, span outside the caption, missing image, ...) are reported
with ``file:line`` (JSON Lines) or ``file#image id`` / ``file#annotation id`` (JSON) and skipped
or raised by ``on_error``.

Example:
    >>> dataset = GroundingJsonlDataset("goldg.odvg.jsonl", "images/")  # doctest: +SKIP
    >>> dataset[0].sample.phrase_texts()  # doctest: +SKIP
    ['a red star']
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from glip.data.base import GroundingDatasetBase
from glip.data.coco_json import CocoAnnotation, CocoImage, is_number, read_coco, read_json_file, xywh_to_xyxy
from glip.data.masks import check_segmentation, read_segmentation
from glip.data.packing import CaptionPacker, CaptionPacking
from glip.data.sample import STREAM_PACKING, GroundingSample, Span, derive_rng
from glip.data.transforms import Transform
from glip.data.validation import (
    DataError,
    RecordErrors,
    check_box,
    check_image_file,
    check_image_size,
    check_spans,
    read_image_size,
)

logger = logging.getLogger(__name__)


def group_regions(
    caption: str, regions: Iterable[tuple[object, object]], width: int, height: int
) -> tuple[list[list[Span]], np.ndarray, list[int]]:
    """Check ``(spans, box_xyxy)`` pairs and group the boxes by phrase (identical spans).

    Returns:
        ``(phrase_spans, boxes [N, 4] float32, box_phrases)``, phrases in order of first appearance.
    """
    phrase_of: dict[tuple[Span, ...], int] = {}
    phrase_spans: list[list[Span]] = []
    boxes: list[np.ndarray] = []
    box_phrases: list[int] = []
    for spans, box in regions:
        key = tuple(check_spans(caption, spans))
        if key not in phrase_of:
            phrase_of[key] = len(phrase_spans)
            phrase_spans.append(list(key))
        if box is not None:
            boxes.append(check_box(box, width, height))
            box_phrases.append(phrase_of[key])
    return phrase_spans, np.array(boxes, dtype=np.float32).reshape(-1, 4), box_phrases


def _caption(record: dict) -> str:
    caption = record.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"caption {caption!r} is not a non-empty string", "bad caption")
    return caption


def _as_box_list(bbox: object) -> list[object]:
    """A region's ``bbox``: one box, or a list of boxes."""
    if isinstance(bbox, (list, tuple)) and bbox and all(isinstance(b, (list, tuple)) for b in bbox):
        return list(bbox)
    return [bbox]


def _locate_phrase(caption: str, phrase: object) -> list[Span]:
    if not isinstance(phrase, str) or not phrase.strip():
        raise DataError("region has neither 'tokens_positive' nor a 'phrase'", "bad span")
    match = re.search(re.escape(phrase.strip()), caption, re.IGNORECASE)
    if match is None:
        raise DataError(f"phrase {phrase!r} does not occur in the caption {caption!r}", "span outside the caption")
    return [match.span()]


def _region_segmentations(region: dict, boxes: list, width: int | None, height: int | None) -> list[object]:
    """The checked segmentation of each box of a region (None where it has none), each inside its
    box when the box is four numbers (a malformed box is reported with the boxes)."""
    def box_of(box: object) -> object:
        well_formed = isinstance(box, (list, tuple)) and len(box) == 4 and all(is_number(v) for v in box)
        return box if well_formed else None

    if len(boxes) == 1 or region.get("segmentation") in (None, []):
        return [read_segmentation(region, width, height, box_of(box)) for box in boxes]
    segmentations = region["segmentation"]
    if not isinstance(segmentations, list) or len(segmentations) != len(boxes):
        raise DataError(f"segmentation: a region with {len(boxes)} boxes needs a list of {len(boxes)} "
                        "segmentations, one per box", "bad segmentation")
    return [read_segmentation({"segmentation": s}, width, height, box_of(box)) for s, box in zip(segmentations, boxes)]


def _odvg_regions(grounding: dict, caption: str, width: int | None = None,
                  height: int | None = None) -> tuple[list[tuple[object, object]], list[object]]:
    """``(spans, box)`` pairs of an ODVG ``grounding`` (or of the simpler ``phrases`` variant), and
    the checked segmentation of each box (None where it has none; ``width``/``height``: the
    recorded image size, if any, that RLE masks must have)."""
    pairs: list[tuple[object, object]] = []
    segmentations: list[object] = []
    if "regions" in grounding:
        regions = grounding["regions"]
        if not isinstance(regions, list):
            raise DataError("'regions' is not a list", "bad record")
        for region in regions:
            if not isinstance(region, dict) or "bbox" not in region:
                raise DataError(f"region {region!r} has no 'bbox'", "bad record")
            spans = region.get("tokens_positive")
            if spans is None:
                spans = _locate_phrase(caption, region.get("phrase"))
            boxes = _as_box_list(region["bbox"])
            pairs.extend((spans, box) for box in boxes)
            segmentations.extend(_region_segmentations(region, boxes, width, height))
        return pairs, segmentations
    phrases = grounding.get("phrases")
    if not isinstance(phrases, list):
        raise DataError("record has neither 'regions' nor a 'phrases' list", "bad record")
    for phrase in phrases:
        if not isinstance(phrase, dict) or "spans" not in phrase:
            raise DataError(f"phrase {phrase!r} has no 'spans'", "bad record")
        boxes = phrase.get("boxes", [])
        if not isinstance(boxes, list):
            raise DataError(f"phrase boxes {boxes!r} are not a list", "bad record")
        pairs.append((phrase["spans"], None))
        pairs.extend((phrase["spans"], box) for box in boxes)
        segmentations.extend([None] * len(boxes))
    return pairs, segmentations


@dataclass
class OdvgLine:
    """One ODVG JSON Lines record, checked except for what needs its image (training and evaluation).

    ``regions`` are ``(spans, box)`` pairs, box ``x1, y1, x2, y2`` or None for a phrase without a
    box, checked against the caption and the image size by `group_regions`.
    """

    record: dict  # the line's JSON object
    file_name: str
    caption: str
    regions: list[tuple[object, object]]
    width: int | None  # as recorded; None when the line has no size
    height: int | None
    segmentations: list[object] | None = None  # per box (in order), its segmentation; None unless all have one


def read_odvg_line(line: str) -> OdvgLine:
    """Parse and check one line of an ODVG JSON Lines file (see the module docstring)."""
    return check_odvg_record(parse_json_line(line))


def parse_json_line(line: str) -> object:
    """One JSON Lines line's value; invalid JSON is a `DataError`."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", "invalid JSON") from None


def check_odvg_record(record: object) -> OdvgLine:
    """Check one parsed ODVG record (see the module docstring)."""
    if not isinstance(record, dict) or not isinstance(record.get("filename"), str):
        raise DataError("record has no 'filename'", "record without 'filename'")
    grounding = record.get("grounding", record)
    if "grounding" not in record and "detection" in record:
        raise DataError(
            "ODVG detection records are not read here: give detection data as COCO JSON "
            "(CocoDetectionDataset)", "unsupported record",
        )
    if not isinstance(grounding, dict):
        raise DataError("'grounding' is not an object", "bad record")
    width = height = None
    if record.get("width") is not None or record.get("height") is not None:
        width, height = check_image_size(record.get("width"), record.get("height"))
    caption = _caption(grounding)
    regions, segmentations = _odvg_regions(grounding, caption, width, height)
    every = bool(segmentations) and None not in segmentations
    return OdvgLine(record, record["filename"], caption, regions, width, height, segmentations if every else None)


class SampleListDataset(GroundingDatasetBase):
    """A dataset whose samples are all known when it is built (captions fixed in the file).

    With :meth:`pack_captions`, each read packs other records' captions beside the sample's own
    (`glip.data.packing`), drawn from ``(seed, epoch, index, repeat)``.
    """

    samples: list[GroundingSample]
    packer: CaptionPacker | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def pack_captions(self, packing: CaptionPacking, max_tokens: int,
                      tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        """Pack other records' captions beside each sample's, within ``max_tokens`` tokens."""
        self.packer = CaptionPacker([sample.caption for sample in self.samples], packing, max_tokens, tokenizer)

    def get_sample(self, index: int, repeat: int = 0) -> GroundingSample:
        index = self._check_index(index)
        sample = self.samples[index].replace()
        if self.packer is not None:
            sample = self.packer.pack(sample, index, derive_rng(self.seed, self.epoch, index, STREAM_PACKING, repeat))
        return sample


class GroundingJsonlDataset(SampleListDataset):
    """ODVG-style JSON Lines grounding data, one image per line.

    Args:
        path: the ``.jsonl`` file.
        image_dir: folder the records' ``filename`` are relative to.
        on_error: ``"skip"`` drops a faulty line with a warning, ``"raise"`` raises `DataError`.
        seed: base seed of the augmentation.
        transform: see `GroundingDatasetBase`.
        skip_empty: drop lines with no box instead of training their caption as all negatives.

    Image sizes come from ``width``/``height`` of the line, else from the image's header.
    """

    def __init__(
        self,
        path: str | Path,
        image_dir: str | Path,
        on_error: str = "skip",
        seed: int = 0,
        transform: Transform | None = None,
        skip_empty: bool = False,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.path = Path(path)
        self.image_dir = Path(image_dir)
        self.errors = RecordErrors(on_error, self.path)
        if not self.path.is_file():
            raise DataError(f"annotation file {str(self.path)!r} does not exist", "missing file")
        self.samples = []
        num_records = 0
        with self.path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                num_records += 1
                source = f"{self.path}:{line_number}"
                try:
                    sample = self._parse(line, source)
                except DataError as error:
                    self.errors.reject(source, error)
                    continue
                if skip_empty and sample.num_boxes == 0:
                    continue
                self.samples.append(sample)
        self.errors.summarize(num_records, len(self.samples))
        if not self.samples:
            raise DataError(f"{self.path}: no records to train on", "empty dataset")
        logger.info("%s: %d grounding records", self.path, len(self.samples))

    def _parse(self, text: str, source: str) -> GroundingSample:
        return odvg_sample(read_odvg_line(text), self.image_dir, source)


def odvg_sample(line: OdvgLine, image_dir: Path, source: str) -> GroundingSample:
    """The training sample of a checked ODVG record whose ``filename`` is relative to ``image_dir``:
    the image must exist, and the boxes lie inside it."""
    path = image_dir / line.file_name
    check_image_file(path)
    width, height = (line.width, line.height) if line.width is not None else read_image_size(path)
    phrase_spans, boxes, box_phrases = group_regions(line.caption, line.regions, width, height)
    if line.segmentations is not None and line.width is None:  # RLE sizes against the size read from the file
        for segmentation in line.segmentations:
            check_segmentation(segmentation, width, height)
    return GroundingSample(
        image_path=path, caption=line.caption, phrase_spans=phrase_spans, boxes=boxes,
        box_phrases=box_phrases, image_id=line.record.get("image_id", line.file_name),
        source=source, width=width, height=height, segmentations=line.segmentations,
    )


class MdetrCocoDataset(SampleListDataset):
    """MDETR-style COCO JSON grounding data (captions on images, ``tokens_positive`` on boxes).

    Args:
        annotation_file: the JSON file (e.g. MDETR's ``final_mixed_train_no_coco.json``).
        image_dir: folder the images' ``file_name`` are relative to.
        on_error: ``"skip"`` drops a faulty image (whole) with a warning, ``"raise"`` raises.
        seed: base seed of the augmentation.
        transform: see `GroundingDatasetBase`.
        skip_empty: drop images with no (non-crowd) box.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        on_error: str = "skip",
        seed: int = 0,
        transform: Transform | None = None,
        skip_empty: bool = False,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.errors = RecordErrors(on_error, self.annotation_file)
        coco = read_coco(read_json_file(self.annotation_file), self.errors, needs_categories=False)
        by_image = coco.annotations_by_image()
        self.samples = []
        for image in coco.images:
            try:
                sample = self._parse(image, by_image.get(image.id, []))
            except _AnnotationFault as fault:
                self.errors.reject(fault.source, fault.error)
                continue
            except DataError as error:
                self.errors.reject(f"{self.annotation_file}#image {image.id}", error)
                continue
            if skip_empty and sample.num_boxes == 0:
                continue
            self.samples.append(sample)
        self.errors.summarize(coco.num_image_records, len(self.samples))
        if not self.samples:
            raise DataError(f"{self.annotation_file}: no images to train on", "empty dataset")
        logger.info("%s: %d grounding images", self.annotation_file, len(self.samples))

    def _parse(self, image: CocoImage, annotations: list[CocoAnnotation]) -> GroundingSample:
        if image.file_name is None:
            raise DataError("image record has no 'file_name'", "bad image record")
        path = self.image_dir / image.file_name
        check_image_file(path)
        width, height = (image.width, image.height) if image.width is not None else read_image_size(path)
        caption = _caption(image.record)
        regions, segmentations = [], []
        for annotation in annotations:
            if annotation.iscrowd:
                continue
            try:
                spans = annotation.record.get("tokens_positive")
                check_spans(caption, spans)
                box = check_box(xywh_to_xyxy(annotation.bbox), width, height)
                if annotation.segmentation is not None and image.width is None:  # size read from the file
                    check_segmentation(annotation.segmentation, width, height)
            except DataError as error:
                raise _AnnotationFault(annotation.source, error) from None
            regions.append((spans, box))
            segmentations.append(annotation.segmentation)
        phrase_spans, boxes, box_phrases = group_regions(caption, regions, width, height)
        return GroundingSample(
            image_path=path, caption=caption, phrase_spans=phrase_spans, boxes=boxes,
            box_phrases=box_phrases, image_id=image.id,
            source=f"{self.annotation_file}#image {image.id}", width=width, height=height,
            segmentations=segmentations if segmentations and None not in segmentations else None,
        )


class _AnnotationFault(Exception):
    """A faulty annotation inside an image record: carries the annotation's own source."""

    def __init__(self, source: str, error: DataError) -> None:
        super().__init__(f"{source}: {error}")
        self.source = source
        self.error = error
