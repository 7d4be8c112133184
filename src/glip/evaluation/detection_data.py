"""COCO-format detection ground truth, checked before any AP is computed.

The file is read and checked by `glip.data.coco_json.read_coco`, the reader training uses too
(ids, sizes, boxes ``w, h >= 0``, ``iscrowd``, LVIS ``frequency`` and federated fields). A fault
that pycocotools would pass over quietly and turn into a wrong number is an `EvaluationError`
here, never a skipped record: every fault of the file is counted, with the first offenders, in
one message. Evaluation adds: at least one ground-truth box (else AP is undefined), annotation ids
renumbered ``1..N`` in our copy, ``area`` and ``iscrowd`` filled as pycocotools needs.

LVIS files are read too: ``frequency`` (``"r"``, ``"c"``, ``"f"``) on categories gives the
rare/common/frequent split; ``neg_category_ids`` and ``not_exhaustive_category_ids`` on images make
the evaluation *federated* (see `glip.evaluation.detection_metrics`). LVIS image records have a
``coco_url`` instead of a ``file_name``; its last two parts (``val2017/000000397133.jpg``) are used,
so the image folder is the one holding ``train2017/`` and ``val2017/``.

Each category is shown to the model as a `CategoryPrompt`: by default its name cleaned like
`glip.prompts.clean_name` (the training and inference prompt), or an override such as
``"stingray, which is flat and round"`` (see `glip.evaluation.prompt_overrides`).

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
from typing import Any

from glip.data.coco_json import FREQUENCIES, CategoryId, CocoAnnotation, ImageId, read_coco
from glip.evaluation.common import EvaluationError, fault_collector, read_json
from glip.evaluation.prompt_overrides import CategoryPrompt, apply_prompt_overrides

logger = logging.getLogger(__name__)

__all__ = ["FREQUENCIES", "FREQUENCY_NAMES", "Category", "CategoryId", "CategoryPrompt", "DetectionDataset",
           "ImageId", "ImageInfo", "detection_dataset_from_coco", "load_detection_dataset"]

FREQUENCY_NAMES = {"r": "rare", "c": "common", "f": "frequent"}


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
        annotations: COCO boxes with ids ``1..N``, ``area`` and ``iscrowd`` filled, and the
            ``segmentation`` of those that have one (checked, as in the file).
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
    faults = fault_collector(source)
    coco = read_coco(data, faults)
    faults.raise_if_any()
    categories = [Category(c.id, c.name, CategoryPrompt(c.clean_name), c.frequency) for c in coco.categories]
    if prompts:
        apply_prompt_overrides(categories, prompts, source)
    dataset = DetectionDataset(
        name=name,
        images=[ImageInfo(i.id, i.file_name, i.width, i.height) for i in coco.images],
        categories=categories,
        annotations=[_pycocotools_record(number, a) for number, a in enumerate(coco.annotations, start=1)],
        image_dir=Path(image_dir) if image_dir is not None else None,
        source=source,
        negative_category_ids={i.id: i.negative_category_ids for i in coco.images
                               if i.negative_category_ids is not None},
        not_exhaustive_category_ids={i.id: i.not_exhaustive_category_ids for i in coco.images
                                     if i.not_exhaustive_category_ids is not None},
    )
    num_empty = sum(1 for a in coco.annotations if a.bbox[2] == 0 or a.bbox[3] == 0)
    if num_empty:
        logger.warning("%s: %d ground-truth boxes have zero width or height; no detection can match them",
                       source, num_empty)
    if dataset.num_boxes() == 0:
        raise EvaluationError(
            f"{source}: no ground-truth boxes (crowd boxes aside) in {len(dataset.images)} images: AP is undefined"
        )
    return dataset


def _pycocotools_record(number: int, annotation: CocoAnnotation) -> dict:
    """A checked annotation as pycocotools reads it, with the id ``number``.

    Ids are renumbered ``1..N``: pycocotools treats a matched ground truth of id 0 as unmatched
    and keys annotations by id, so a 0 or a duplicated id would silently change AP.
    """
    record = {
        "id": number,
        "image_id": annotation.image_id,
        "category_id": annotation.category_id,
        "bbox": list(annotation.bbox),
        "area": annotation.area,
        "iscrowd": int(annotation.iscrowd),
    }
    if annotation.segmentation is not None:  # checked polygons or RLE: for mask AP
        record["segmentation"] = annotation.segmentation
    if "ignore" in annotation.record:
        record["ignore"] = annotation.record["ignore"]
    return record
