"""COCO JSON (images, categories, annotations) read and checked once, for training and evaluation.

`read_coco` checks what every reader of the file needs, and hands each faulty record to a
`RecordErrors` collector, whose policy (skip, raise, raise all) is the caller's:

- images: an ``id`` (int or str, one type for the whole file) that is unique, a ``width`` and
  ``height`` that are positive integers when given, a ``file_name`` (LVIS: the last two parts of
  ``coco_url``, ``val2017/000000397133.jpg``, so the image folder is the one holding ``val2017/``);
- categories: a unique ``id``, a ``name`` that is not empty once cleaned like
  `glip.prompts.clean_name`, and an LVIS ``frequency`` of ``"r"``, ``"c"`` or ``"f"``; a faulty
  category is never skipped (annotations and prompts refer to it);
- annotations: a known ``image_id`` and ``category_id``, a ``bbox`` ``[x, y, w, h]`` of four
  finite numbers with ``w, h >= 0``, ``iscrowd`` 0 or 1 (missing: 0), ``area`` a number (missing:
  ``w * h``), a ``segmentation`` (optional; polygons or RLE of the image's size, not empty and
  inside its box, checked without decoding by `glip.data.masks.read_segmentation`; ``[]`` counts
  as none);
- LVIS federated fields of an image, ``neg_category_ids`` and ``not_exhaustive_category_ids``:
  lists of known category ids (a file with the second needs the first).

An image with a faulty annotation is dropped whole, with its other annotations (each still checked
and reported): reading it without the faulty box would make that object background. The
annotations of an image rejected for a fault of its own record are dropped silently (that fault
was reported).

What each consumer adds is its own: training needs the image file and boxes inside the image
(`glip.data.coco`), evaluation needs at least one box and renumbers annotation ids
(`glip.evaluation.detection_data`).

Example:
    >>> errors = RecordErrors("raise", "mini.json")
    >>> data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
    ...         "categories": [{"id": 3, "name": "traffic_light"}],
    ...         "annotations": [{"id": 9, "image_id": 1, "category_id": 3, "bbox": [2, 3, 20, 10]}]}
    >>> coco = read_coco(data, errors)
    >>> coco.categories[0].clean_name, coco.annotations[0].bbox, coco.annotations[0].area
    ('traffic light', (2.0, 3.0, 20.0, 10.0), 200.0)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from glip.data.masks import read_segmentation
from glip.data.validation import DataError, RecordErrors, check_image_size
from glip.prompts import clean_name

ImageId = Union[int, str]
CategoryId = Union[int, str]
FREQUENCIES = ("r", "c", "f")
FEDERATED_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")


@dataclass
class CocoImage:
    """One image record, checked."""

    id: ImageId
    file_name: str | None  # relative to the image folder; None when the record names no file
    width: int | None  # as recorded; None when the record has no size
    height: int | None
    negative_category_ids: frozenset | None = None  # LVIS: categories checked to be absent
    not_exhaustive_category_ids: frozenset | None = None  # LVIS: categories whose boxes may be incomplete
    record: dict = field(default_factory=dict, repr=False)  # the file's record (e.g. an MDETR caption)


@dataclass
class CocoCategory:
    id: CategoryId
    name: str  # as written in the file
    clean_name: str  # `glip.prompts.clean_name` of it: the phrase of training and inference prompts
    frequency: str | None = None  # LVIS "r", "c" or "f"


@dataclass
class CocoAnnotation:
    """One box, checked; ``bbox`` is COCO ``x, y, w, h`` in the image's pixels."""

    id: object  # as in the file (None when it has none)
    image_id: ImageId
    category_id: CategoryId
    bbox: tuple[float, float, float, float]
    area: float
    iscrowd: bool
    source: str  # "file#annotation 42 (image 7)", for messages
    segmentation: object = field(default=None, repr=False)  # checked COCO polygons or RLE; None: no mask
    record: dict = field(default_factory=dict, repr=False)  # the file's record (e.g. MDETR tokens_positive)


@dataclass
class CocoFile:
    """The records of a COCO file that passed the checks, in file order."""

    source: str
    images: list[CocoImage]
    categories: list[CocoCategory]
    annotations: list[CocoAnnotation]
    num_image_records: int  # images in the file, faulty ones included

    def annotations_by_image(self) -> dict[ImageId, list[CocoAnnotation]]:
        by_image: dict[ImageId, list[CocoAnnotation]] = {}
        for annotation in self.annotations:
            by_image.setdefault(annotation.image_id, []).append(annotation)
        return by_image


def read_json_file(path: str | Path, what: str = "annotation file", error_type: type[DataError] = DataError) -> Any:
    """Read a JSON file; a missing, invalid or non-UTF-8 file is an ``error_type`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise error_type(f"{what} {str(path)!r} does not exist", "missing file")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise error_type(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})", "invalid JSON") from None
    except UnicodeDecodeError as exc:
        raise error_type(f"{path}: not UTF-8 text ({exc.reason})", "invalid JSON") from None


def is_id(value: object) -> bool:
    """An image or category id: an int (not a bool) or a str."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def xywh_to_xyxy(bbox: object) -> list[float]:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]`` (continuous pixels: ``x2 = x + w``)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise DataError(f"bbox {bbox!r} is not [x, y, width, height]", "bad box")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"bbox {bbox!r} is not four numbers", "bad box") from None
    return [x, y, x + w, y + h]


def read_coco(data: object, errors: RecordErrors, needs_categories: bool = True) -> CocoFile:
    """Check a loaded COCO dict (see the module docstring); faulty records go to ``errors``.

    Args:
        data: the file's JSON.
        errors: the collector (its ``file`` names the records); faults of the whole file (not a
            COCO dict, no image, no category, a faulty category) are always raised.
        needs_categories: False for files whose boxes need no category (MDETR grounding): then
            ``categories`` is not read (``CocoFile.categories`` is empty) and ``category_id`` is
            not checked.
    """
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or (
            needs_categories and not isinstance(data.get("categories"), list)):
        lists = "'images' and 'categories'" if needs_categories else "'images'"
        errors.fail(f"not COCO detection JSON (needs the lists {lists})", "invalid JSON")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        errors.fail("'annotations' is not a list", "invalid JSON")
    categories = _read_categories(data["categories"], errors) if needs_categories else []
    known_categories = {c.id for c in categories} if needs_categories else None
    images, rejected = _read_images(data["images"], known_categories, errors)
    kept, faulty = _read_annotations(annotations, images, rejected, known_categories, errors)
    return CocoFile(errors.file, [i for i in images if i.id not in faulty], categories,
                    [a for a in kept if a.image_id not in faulty], len(data["images"]))


def _read_categories(records: list, errors: RecordErrors) -> list[CocoCategory]:
    if not records:
        errors.fail("the 'categories' list is empty: there is nothing to detect", "bad category")
    faults = RecordErrors("raise_all", errors.file, errors.error_type)  # never skipped
    categories: list[CocoCategory] = []
    seen: set = set()
    for position, record in enumerate(records):
        cid = record.get("id") if isinstance(record, dict) else None
        where = f"{errors.file}#categories[{position}]"
        if not is_id(cid) or not isinstance(record.get("name"), str):
            faults.reject(where, DataError("a category needs an 'id' (int or str) and a 'name'",
                                           "category without an 'id' and a 'name'"), f"categories[{position}]")
            continue
        if cid in seen:
            faults.reject(where, DataError(f"duplicate category id {cid!r}", "duplicate category id",
                                           "category ids must be unique"), cid)
            continue
        seen.add(cid)
        frequency = record.get("frequency")
        if frequency is not None and frequency not in FREQUENCIES:
            faults.reject(where, DataError(f"frequency {frequency!r}", "frequency other than 'r', 'c' or 'f'"), cid)
            continue
        phrase = clean_name(record["name"])
        if not phrase:
            faults.reject(where, DataError(f"name {record['name']!r} is empty once cleaned",
                                           "name that is empty once cleaned",
                                           "parentheses and underscores are removed: give it a name"),
                          record["name"])
            continue
        categories.append(CocoCategory(cid, record["name"], phrase, frequency))
    faults.raise_if_any()
    return categories


def _file_name(record: dict) -> str | None:
    if isinstance(record.get("file_name"), str):
        return record["file_name"]
    if isinstance(record.get("coco_url"), str):  # LVIS
        return "/".join(record["coco_url"].split("/")[-2:])
    return None


def _federated(record: dict, key: str, known_categories: set | None) -> frozenset | None:
    if key not in record:
        return None
    values = record[key]
    if not isinstance(values, list):
        raise DataError(f"'{key}' {values!r} is not a list", f"'{key}' that is not a list")
    unknown = [v for v in values if not is_id(v) or (known_categories is not None and v not in known_categories)]
    if unknown:
        raise DataError(f"unknown category ids {unknown!r} in '{key}'", f"unknown category id in '{key}'",
                        "the category is not in 'categories'")
    return frozenset(values)


def _read_images(records: list, known_categories: set | None,
                 errors: RecordErrors) -> tuple[list[CocoImage], set[ImageId]]:
    """The images that passed, and the ids of those rejected for a fault of their own record."""
    if not records:
        errors.fail("the 'images' list is empty: there is nothing to read", "empty dataset")
    images: list[CocoImage] = []
    rejected: set[ImageId] = set()
    seen: set[ImageId] = set()
    for position, record in enumerate(records):
        image_id = record.get("id") if isinstance(record, dict) else None
        if not is_id(image_id):
            errors.reject(f"{errors.file}#images[{position}]", DataError(
                "image record without an integer or string 'id'", "image record without an integer or string 'id'"),
                f"images[{position}]")
            continue
        where = f"{errors.file}#image {image_id}"
        if image_id in seen:
            errors.reject(where, DataError("duplicate image id", "duplicate image id", "image ids must be unique"),
                          image_id)
            continue
        seen.add(image_id)
        try:
            width = height = None
            if record.get("width") is not None or record.get("height") is not None:
                width, height = check_image_size(record.get("width"), record.get("height"))
            negatives, not_exhaustive = (_federated(record, key, known_categories) for key in FEDERATED_KEYS)
        except DataError as error:
            errors.reject(where, error, image_id)
            rejected.add(image_id)
            continue
        images.append(CocoImage(image_id, _file_name(record), width, height, negatives, not_exhaustive, record))
    if len({type(i.id) for i in images}) > 1:
        errors.fail("image ids mix integers and strings: use one type", "bad image record")
    if any(i.not_exhaustive_category_ids is not None for i in images) and not any(
            i.negative_category_ids is not None for i in images):
        errors.fail("images have 'not_exhaustive_category_ids' but none has 'neg_category_ids': a federated "
                    "(LVIS) file needs both", "bad image record")
    return images, rejected


def _read_annotations(records: list, images: list[CocoImage], rejected: set[ImageId], known_categories: set | None,
                      errors: RecordErrors) -> tuple[list[CocoAnnotation], set[ImageId]]:
    """The checked annotations, and the images with a faulty one (to drop whole). The annotations
    of a ``rejected`` image (a fault of its own record, reported) are dropped unchecked."""
    image_ids = {i.id for i in images}
    sizes = {i.id: (i.width, i.height) for i in images}
    faulty: set[ImageId] = set()
    image_ids_as_text = {str(i) for i in image_ids}
    kept: list[CocoAnnotation] = []
    for position, ann in enumerate(records):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        where = f"{errors.file}#annotation {ann_id if ann_id is not None else f'at position {position}'}"
        name = ann_id if ann_id is not None else f"annotations[{position}]"
        if not isinstance(ann, dict):
            errors.reject(where, DataError("annotation that is not an object", "annotation that is not an object"),
                          name)
            continue
        image_id = ann.get("image_id")
        if is_id(image_id) and image_id in rejected:
            continue  # dropped with its image, whose fault was reported
        if not is_id(image_id) or image_id not in image_ids:
            same_text = str(image_id) in image_ids_as_text
            hint = "ids are compared with their type: '1' is not 1" if same_text else "not in the 'images' list"
            errors.reject(where, DataError(f"refers to unknown image id {image_id!r}", "unknown image id", hint),
                          image_id)
            continue
        try:
            kept.append(_annotation(ann, f"{where} (image {image_id})", known_categories, sizes[image_id]))
        except DataError as error:
            example = ann.get("category_id") if error.kind == "unknown category id" else name
            errors.reject(f"{where} (image {image_id})", error, example)
            faulty.add(image_id)
    return kept, faulty


def _annotation(ann: dict, source: str, known_categories: set | None,
                size: tuple[int | None, int | None]) -> CocoAnnotation:
    category_id = ann.get("category_id")
    if known_categories is not None and (not is_id(category_id) or category_id not in known_categories):
        raise DataError(f"unknown category id {category_id!r}", "unknown category id",
                        "the category is not in 'categories'")
    box = ann.get("bbox")
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(is_number(v) for v in box) \
            or box[2] < 0 or box[3] < 0:
        raise DataError(f"bbox {box!r} is not [x, y, w, h] with w, h >= 0",
                        "bbox that is not [x, y, w, h] with w, h >= 0")
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1):  # True and False compare equal to 1 and 0
        raise DataError(f"iscrowd {iscrowd!r} is not 0 or 1", "iscrowd that is not 0 or 1")
    area = ann.get("area")
    bbox = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    return CocoAnnotation(
        id=ann.get("id"), image_id=ann["image_id"], category_id=category_id, bbox=bbox,
        area=float(area) if is_number(area) else bbox[2] * bbox[3], iscrowd=bool(iscrowd), source=source,
        segmentation=read_segmentation(ann, *size, box=(bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3])),
        record=ann,
    )
