"""COCO-format detection ground truth, checked before any AP is computed.

A fault that pycocotools would pass over quietly and turn into a wrong number is an
`EvaluationError` here, with counts and the first offenders:

- duplicate image ids, or image records without an ``id`` (int or str, one type for the whole file);
- annotations of an image id that the ``images`` list does not hold;
- annotations of an unknown category id; duplicate category ids;
- boxes that are not four finite numbers with ``w, h >= 0``;
- no image, or no ground-truth box at all (AP is undefined).

Annotation ids are renumbered ``1..N`` in our copy: pycocotools treats a matched ground truth of id
0 as unmatched and keys annotations by id, so a 0 or a duplicated id silently changes AP.
A missing ``area`` is filled with ``w * h`` and a missing ``iscrowd`` with 0, as pycocotools needs.

LVIS files are read too: ``frequency`` (``"r"``, ``"c"``, ``"f"``) on categories gives the
rare/common/frequent split; ``neg_category_ids`` and ``not_exhaustive_category_ids`` on images make
the evaluation *federated* (see `glip.evaluation.detection_metrics`). LVIS image records have a
``coco_url`` instead of a ``file_name``; its last two parts (``val2017/000000397133.jpg``) are used,
so the image folder is the one holding ``train2017/`` and ``val2017/``.

Each category is shown to the model as a `CategoryPrompt`: by default its name cleaned like
`glip.prompts.clean_name` (the training and inference prompt), or an override such as
``"stingray, which is flat and round"``.

Example:
    >>> dataset = load_detection_dataset("instances_val2017.json", "val2017")  # doctest: +SKIP
    >>> len(dataset.images), dataset.categories[0].prompt.text  # doctest: +SKIP
    (5000, 'person')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from glip.evaluation.common import EvaluationError, FaultLog, examples, is_id, is_number, read_json
from glip.prompts import clean_name

logger = logging.getLogger(__name__)

ImageId = Union[int, str]
CategoryId = Union[int, str]
FREQUENCIES = ("r", "c", "f")
FREQUENCY_NAMES = {"r": "rare", "c": "common", "f": "frequent"}
# What a prompt override may say: a string (the whole text is the phrase) or these keys.
PROMPT_KEYS = ("phrase", "name", "prefix", "suffix")


@dataclass(frozen=True)
class CategoryPrompt:
    """How one category appears in the detection prompt: ``prefix + phrase + suffix``.

    The category's score is the model's score of ``phrase`` (its tokens only); ``prefix`` and
    ``suffix`` are context, as in the official ``{"prefix", "name", "suffix"}`` caption prompts.
    """

    phrase: str
    prefix: str = ""
    suffix: str = ""

    @property
    def text(self) -> str:
        return f"{self.prefix}{self.phrase}{self.suffix}"


@dataclass
class Category:
    id: CategoryId
    name: str  # as written in the annotation file
    prompt: CategoryPrompt
    frequency: str | None = None  # LVIS "r", "c" or "f"


@dataclass
class ImageInfo:
    id: ImageId
    file_name: str | None  # relative to the dataset's image folder; needed only to run a model
    width: int | None = None
    height: int | None = None


@dataclass
class DetectionDataset:
    """Checked COCO ground truth and how to prompt for its categories.

    Attributes:
        name: used in reports.
        images: in file order (the order images are run in).
        categories: in file order (the order of the prompt).
        annotations: COCO boxes with ids ``1..N``, ``area`` and ``iscrowd`` filled.
        image_dir: folder the ``file_name`` of the images are relative to.
        source: the annotation file, for messages.
        negative_category_ids: LVIS: per image, the categories checked to be absent.
        not_exhaustive_category_ids: LVIS: per image, categories whose boxes may be incomplete.
    """

    name: str
    images: list[ImageInfo]
    categories: list[Category]
    annotations: list[dict]
    image_dir: Path | None = None
    source: str = "<memory>"
    negative_category_ids: dict[ImageId, frozenset] = field(default_factory=dict)
    not_exhaustive_category_ids: dict[ImageId, frozenset] = field(default_factory=dict)

    @property
    def has_frequencies(self) -> bool:
        return any(c.frequency is not None for c in self.categories)

    @property
    def is_federated(self) -> bool:
        """LVIS-style: at least one image says which categories are known absent."""
        return bool(self.negative_category_ids)

    @property
    def category_ids(self) -> list[CategoryId]:
        return [c.id for c in self.categories]

    def image_path(self, image: ImageInfo) -> Path:
        if image.file_name is None:
            raise EvaluationError(f"{self.source}: image {image.id!r} has no 'file_name' (or 'coco_url')")
        return Path(self.image_dir or ".") / image.file_name

    def missing_images(self) -> list[ImageInfo]:
        """Images whose file is not on disk (or that name no file)."""
        return [i for i in self.images if i.file_name is None or not self.image_path(i).is_file()]

    def coco_ground_truth(self, image_ids: set[ImageId] | None = None) -> dict:
        """The ground truth as a COCO dict for pycocotools, restricted to ``image_ids`` if given."""
        images = [i for i in self.images if image_ids is None or i.id in image_ids]
        annotations = [a for a in self.annotations if image_ids is None or a["image_id"] in image_ids]
        return {
            "images": [{"id": i.id, "width": i.width, "height": i.height, "file_name": i.file_name} for i in images],
            "annotations": [dict(a) for a in annotations],
            "categories": [{"id": c.id, "name": c.name} for c in self.categories],
        }

    def num_boxes(self) -> int:
        return sum(1 for a in self.annotations if not a.get("iscrowd", 0))


def load_detection_dataset(
    annotation_file: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
    name: str | None = None,
    prompts: Mapping[Any, Any] | None = None,
) -> DetectionDataset:
    """Read and check a COCO (or LVIS) detection JSON.

    Args:
        annotation_file: the JSON file.
        image_dir: folder of the images (default: the annotation file's folder).
        name: for reports (default: the file's stem).
        prompts: per-category prompt overrides, keyed by category id or name: a string (the whole
            text is the phrase scored) or ``{"prefix", "phrase" (or "name"), "suffix"}``.
    """
    path = Path(annotation_file)
    data = read_json(path, "annotation file")
    return detection_dataset_from_coco(
        data, name=name or path.stem, image_dir=Path(image_dir) if image_dir is not None else path.parent,
        source=str(path), prompts=prompts,
    )


def detection_dataset_from_coco(
    data: Any,
    name: str = "dataset",
    image_dir: str | os.PathLike | None = None,
    source: str = "<memory>",
    prompts: Mapping[Any, Any] | None = None,
) -> DetectionDataset:
    """A `DetectionDataset` from an already loaded COCO dict (see `load_detection_dataset`)."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(
            data.get("categories"), list):
        raise EvaluationError(f"{source}: not COCO detection JSON (needs the lists 'images' and 'categories')")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise EvaluationError(f"{source}: 'annotations' is not a list")
    images = _read_images(data["images"], source)
    categories = _read_categories(data["categories"], source, prompts)
    checked = _read_annotations(annotations, {i.id for i in images}, {c.id for c in categories}, source)
    negatives, not_exhaustive = _read_federated(data["images"], {c.id for c in categories}, source)
    dataset = DetectionDataset(
        name=name, images=images, categories=categories, annotations=checked,
        image_dir=Path(image_dir) if image_dir is not None else None, source=source,
        negative_category_ids=negatives, not_exhaustive_category_ids=not_exhaustive,
    )
    if dataset.num_boxes() == 0:
        raise EvaluationError(
            f"{source}: no ground-truth boxes (crowd boxes aside) in {len(images)} images: AP is undefined"
        )
    return dataset


def _read_images(records: list, source: str) -> list[ImageInfo]:
    if not records:
        raise EvaluationError(f"{source}: the 'images' list is empty: nothing to evaluate")
    faults = FaultLog(source)
    images: list[ImageInfo] = []
    seen: set = set()
    for position, record in enumerate(records):
        image_id = record.get("id") if isinstance(record, dict) else None
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            faults.add("image record without an integer or string 'id'", f"images[{position}]")
            continue
        if image_id in seen:
            faults.add("duplicate image id", image_id, "image ids must be unique")
            continue
        seen.add(image_id)
        file_name = record.get("file_name")
        if not isinstance(file_name, str) and isinstance(record.get("coco_url"), str):
            file_name = "/".join(record["coco_url"].split("/")[-2:])
        width, height = record.get("width"), record.get("height")
        images.append(ImageInfo(
            id=image_id, file_name=file_name if isinstance(file_name, str) else None,
            width=width if isinstance(width, int) else None, height=height if isinstance(height, int) else None,
        ))
    faults.raise_if_any()
    if len({type(i.id) for i in images}) > 1:
        raise EvaluationError(f"{source}: image ids mix integers and strings: use one type")
    return images


def _read_categories(records: list, source: str, prompts: Mapping[Any, Any] | None) -> list[Category]:
    if not records:
        raise EvaluationError(f"{source}: the 'categories' list is empty")
    faults = FaultLog(source)
    categories: list[Category] = []
    for position, record in enumerate(records):
        cid = record.get("id") if isinstance(record, dict) else None
        if not isinstance(cid, (int, str)) or isinstance(cid, bool) or not isinstance(record.get("name"), str):
            faults.add("category without an 'id' and a 'name'", f"categories[{position}]")
            continue
        if any(c.id == cid for c in categories):
            faults.add("duplicate category id", cid, "category ids must be unique")
            continue
        frequency = record.get("frequency")
        if frequency is not None and frequency not in FREQUENCIES:
            faults.add("frequency other than 'r', 'c' or 'f'", cid)
            continue
        phrase = clean_name(record["name"])
        if not phrase:
            faults.add("name that is empty once cleaned", record["name"])
            continue
        categories.append(Category(cid, record["name"], CategoryPrompt(phrase), frequency))
    faults.raise_if_any()
    if prompts:
        apply_prompt_overrides(categories, prompts, source)
    return categories


def apply_prompt_overrides(categories: list[Category], prompts: Mapping[Any, Any], source: str) -> None:
    """Replace the prompt of the categories named (by id or name) in ``prompts``, in place."""
    by_key: dict[Any, Category] = {}
    for category in categories:
        by_key.setdefault(category.name, category)
        by_key.setdefault(clean_name(category.name), category)
    by_id = {c.id: c for c in categories}
    unknown = []
    for key, value in prompts.items():
        category = by_id.get(key)
        if category is None and isinstance(key, str) and key.strip().lstrip("-").isdigit():
            category = by_id.get(int(key))
        if category is None:
            category = by_key.get(key)
        if category is None:
            unknown.append(key)
            continue
        category.prompt = parse_prompt_override(value, f"{source}: prompt of category {key!r}")
    if unknown:
        raise EvaluationError(
            f"{source}: {len(unknown)} prompt overrides name no category ({examples(unknown)}); "
            f"categories are, e.g., {examples(c.name for c in categories)}"
        )


def parse_prompt_override(value: Any, where: str) -> CategoryPrompt:
    """``"text"`` or ``{"prefix", "phrase"/"name", "suffix"}`` -> `CategoryPrompt`."""
    if isinstance(value, str):
        if not value.strip():
            raise EvaluationError(f"{where}: the prompt text is empty")
        return CategoryPrompt(value.strip())
    if isinstance(value, Mapping):
        unknown = set(value) - set(PROMPT_KEYS)
        if unknown:
            raise EvaluationError(f"{where}: unknown keys {sorted(unknown)}; expected {list(PROMPT_KEYS)}")
        phrase = value.get("phrase", value.get("name"))
        prefix, suffix = value.get("prefix", ""), value.get("suffix", "")
        if not isinstance(phrase, str) or not phrase.strip():
            raise EvaluationError(f"{where}: needs a non-empty 'phrase' (or 'name')")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise EvaluationError(f"{where}: 'prefix' and 'suffix' must be strings")
        return CategoryPrompt(phrase.strip(), prefix, suffix)
    raise EvaluationError(f"{where}: must be a string or a mapping, got {type(value).__name__}")


def _read_annotations(records: list, image_ids: set, category_ids: set, source: str) -> list[dict]:
    faults = FaultLog(source)
    checked: list[dict] = []
    num_empty = 0
    image_ids_as_text = {str(i) for i in image_ids}
    for position, ann in enumerate(records):
        where = ann.get("id", f"annotations[{position}]") if isinstance(ann, dict) else f"annotations[{position}]"
        if not isinstance(ann, dict):
            faults.add("annotation that is not an object", where)
            continue
        if not is_id(ann.get("image_id")) or ann["image_id"] not in image_ids:
            same_text = str(ann.get("image_id")) in image_ids_as_text
            hint = "ids are compared with their type: '1' is not 1" if same_text else "not in the 'images' list"
            faults.add("unknown image id", ann.get("image_id"), hint)
            continue
        if not is_id(ann.get("category_id")) or ann["category_id"] not in category_ids:
            faults.add("unknown category id", ann.get("category_id"), "the category is not in 'categories'")
            continue
        box = ann.get("bbox")
        if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(is_number(v) for v in box) \
                or box[2] < 0 or box[3] < 0:
            faults.add("bbox that is not [x, y, w, h] with w, h >= 0", where)
            continue
        area = ann.get("area")
        iscrowd = ann.get("iscrowd", 0)
        record = {
            "id": len(checked) + 1,
            "image_id": ann["image_id"],
            "category_id": ann["category_id"],
            "bbox": [float(v) for v in box],
            "area": float(area) if is_number(area) else float(box[2]) * float(box[3]),
            "iscrowd": 1 if iscrowd else 0,
        }
        if "ignore" in ann:
            record["ignore"] = ann["ignore"]
        if box[2] == 0 or box[3] == 0:
            num_empty += 1
        checked.append(record)
    faults.raise_if_any()
    if num_empty:
        logger.warning("%s: %d ground-truth boxes have zero width or height; no detection can match them",
                       source, num_empty)
    return checked


def _read_federated(records: list, category_ids: set, source: str) -> tuple[dict, dict]:
    """LVIS ``neg_category_ids`` / ``not_exhaustive_category_ids`` per image (empty when absent)."""
    faults = FaultLog(source)
    negatives: dict[ImageId, frozenset] = {}
    not_exhaustive: dict[ImageId, frozenset] = {}
    for record in records:
        for key, table in (("neg_category_ids", negatives), ("not_exhaustive_category_ids", not_exhaustive)):
            if key not in record:
                continue
            values = record[key]
            if not isinstance(values, list):
                faults.add(f"'{key}' that is not a list", record["id"])
                continue
            for value in values:
                if not is_id(value) or value not in category_ids:
                    faults.add(f"unknown category id in '{key}'", value)
            table[record["id"]] = frozenset(values)
    faults.raise_if_any()
    if not_exhaustive and not negatives:
        raise EvaluationError(
            f"{source}: images have 'not_exhaustive_category_ids' but none has 'neg_category_ids': "
            "a federated (LVIS) file needs both"
        )
    return negatives, not_exhaustive
