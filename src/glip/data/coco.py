"""COCO-format detection data as grounding samples with sampled class prompts.

The prompt of an image is built when the image is read: its positive categories (those with a
box) plus randomly drawn negative categories, up to ``max_prompt_categories`` names in all
(official GLIP: 85), in a random order, joined as in `glip.prompts.build_class_prompt`. So any
number of categories trains, 80 or 1203, and the model learns to ignore absent names.

Rules, as in the official trainer:

- all positive categories are kept even when they alone exceed ``max_prompt_categories`` (no
  negatives are added then);
- the prompt must fit ``max_prompt_tokens`` (the text window): positives are taken in a random
  order while they fit, and the boxes of a positive that does not fit are dropped for that read
  (their object then counts as background in that prompt); negatives are added while they fit;
- crowd annotations (``iscrowd=1``) are ignored;
- images without (non-crowd) annotations are kept and train as pure negatives, unless
  ``skip_empty=True``.

Randomness is derived from ``(seed, epoch, index)``: the same prompt for the same index and epoch
in every worker and after a resume, a different one next epoch (see `GroundingDatasetBase`).

Example:
    >>> dataset = CocoDetectionDataset("instances_train2017.json", "train2017")  # doctest: +SKIP
    >>> dataset.set_epoch(3)  # doctest: +SKIP
    >>> example = dataset[0]  # doctest: +SKIP
    >>> example.sample.caption  # doctest: +SKIP
    'oven. person. kite. ...'
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from glip.data.base import GroundingDatasetBase
from glip.data.sample import STREAM_PROMPT, GroundingSample, derive_rng
from glip.data.transforms import Transform
from glip.data.validation import (
    DataError,
    RecordErrors,
    check_box,
    check_image_file,
    check_image_size,
    read_image_size,
)
from glip.prompts import Prompt, build_class_prompt, clean_name
from glip.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

_SPECIAL_TOKENS = 2  # [CLS] and [SEP]


@dataclass
class _CocoImage:
    """One kept image: where it is and its boxes, with categories as indices into the name list."""

    path: Path
    image_id: int | str
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32 xyxy, clipped to the image
    categories: np.ndarray  # [N] int64 index into CocoDetectionDataset.category_names
    source: str


def load_json(path: Path) -> object:
    """Read a JSON file; a missing or invalid file is a `DataError` naming it."""
    if not path.is_file():
        raise DataError(f"annotation file {str(path)!r} does not exist", "missing file")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})", "invalid JSON") from exc


def xywh_to_xyxy(bbox: object) -> list[float]:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]`` (continuous pixels: ``x2 = x + w``)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise DataError(f"bbox {bbox!r} is not [x, y, width, height]", "bad box")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"bbox {bbox!r} is not four numbers", "bad box") from None
    return [x, y, x + w, y + h]


def _image_id(record: object) -> int | str | None:
    """The ``id`` of an image record when it is a usable key (int or str), else ``None``."""
    key = record.get("id") if isinstance(record, dict) else None
    return key if isinstance(key, (int, str)) else None


def group_annotations(
    annotations: list, images: list, file: Path, errors: RecordErrors
) -> dict[int | str, list[tuple[str, dict]]]:
    """Annotations by image id, each with its source ``file#annotation id``; an annotation of an
    unknown image is reported (it cannot be attached to any image)."""
    image_ids = {_image_id(record) for record in images} - {None}
    by_image: dict[int | str, list[tuple[str, dict]]] = {}
    for position, ann in enumerate(annotations):
        ann_id = ann.get("id", f"at position {position}") if isinstance(ann, dict) else f"at position {position}"
        source = f"{file}#annotation {ann_id}"
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if not isinstance(image_id, (int, str)) or image_id not in image_ids:
            errors.reject(source, DataError(f"refers to unknown image id {image_id!r}", "unknown image"))
            continue
        by_image.setdefault(image_id, []).append((source, ann))
    return by_image


def image_size(record: dict, path: Path) -> tuple[int, int]:
    """``(width, height)`` from an image record, else from the file's header."""
    if record.get("width") is not None or record.get("height") is not None:
        return check_image_size(record.get("width"), record.get("height"))
    return read_image_size(path)


class CocoDetectionDataset(GroundingDatasetBase):
    """A COCO-format detection dataset (JSON + image folder) read as grounding samples.

    Args:
        annotation_file: COCO JSON with ``images``, ``annotations`` and ``categories``.
        image_dir: folder the images' ``file_name`` are relative to.
        max_prompt_categories: names per prompt, positives included (official: 85).
        max_prompt_tokens: the text window the prompt must fit, ``[CLS]``/``[SEP]`` included
            (``None``: no token limit, the collator then drops what falls beyond its window).
        on_error: ``"skip"`` drops a faulty image with a warning, ``"raise"`` raises `DataError`.
            An image is dropped whole if any of its annotations is faulty: training it without the
            faulty box would teach that the object is background.
        seed: base seed of prompt sampling and augmentation.
        transform: see `GroundingDatasetBase`.
        skip_empty: drop images with no (non-crowd) annotation instead of training them as negatives.
        tokenizer: counts the prompt's tokens; defaults to `glip.tokenizer.load_tokenizer`.
        fixed_prompt: one prompt for every image, its phrase ``i`` = category ``i`` of the file (in
            file order), instead of sampled prompts: the fixed task prompt of prompt tuning, which
            must be the very prompt used at inference. The caller makes sure it fits the window.

    Raises:
        DataError: the file is missing or not COCO JSON, a category name is empty once cleaned, or
            (with ``on_error="raise"``) a record is faulty. Messages name the file and the record.
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path,
        max_prompt_categories: int = 85,
        max_prompt_tokens: int | None = 256,
        on_error: str = "skip",
        seed: int = 0,
        transform: Transform | None = None,
        skip_empty: bool = False,
        tokenizer: PreTrainedTokenizerBase | None = None,
        fixed_prompt: Prompt | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        if max_prompt_categories < 1:
            raise ValueError(f"max_prompt_categories must be >= 1, got {max_prompt_categories}")
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.max_prompt_categories = int(max_prompt_categories)
        self.max_prompt_tokens = max_prompt_tokens
        self.errors = RecordErrors(on_error, self.annotation_file)
        data = load_json(self.annotation_file)
        sections = ("images", "annotations", "categories")
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in sections):
            raise DataError(
                f"{self.annotation_file}: not COCO detection JSON (needs the lists 'images', "
                "'annotations' and 'categories')", "invalid JSON",
            )
        self.category_ids, self.raw_names, self.category_names = self._read_categories(data["categories"])
        self._category_index = {cid: i for i, cid in enumerate(self.category_ids)}
        self.images = self._read_images(data["images"], data["annotations"], skip_empty)
        self.errors.summarize(len(data["images"]), len(self.images))
        if not self.images:
            raise DataError(f"{self.annotation_file}: no images to train on", "empty dataset")
        self.fixed_prompt = fixed_prompt
        if fixed_prompt is not None and len(fixed_prompt.phrases) != len(self.category_ids):
            raise DataError(f"{self.annotation_file}: the fixed prompt has {len(fixed_prompt.phrases)} phrases for "
                            f"{len(self.category_ids)} categories", "bad prompt")
        counted = max_prompt_tokens is not None and fixed_prompt is None
        self._token_costs = self._count_tokens(tokenizer) if counted else None
        logger.info(
            "%s: %d images, %d categories", self.annotation_file, len(self.images), len(self.category_ids)
        )

    def _read_categories(self, categories: list) -> tuple[list, list[str], list[str]]:
        ids, raw, cleaned = [], [], []
        for record in categories:
            where = f"{self.annotation_file}#category {record.get('id') if isinstance(record, dict) else record!r}"
            if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("name"), str):
                raise DataError(f"{where}: a category needs an 'id' and a 'name'", "bad category")
            name = clean_name(record["name"])
            if not name:
                raise DataError(
                    f"{where}: name {record['name']!r} is empty once cleaned (parentheses and "
                    "underscores are removed)", "bad category",
                )
            if record["id"] in ids:
                raise DataError(f"{where}: duplicate category id", "bad category")
            ids.append(record["id"])
            raw.append(record["name"])
            cleaned.append(name)
        if not ids:
            raise DataError(f"{self.annotation_file}: no categories", "bad category")
        return ids, raw, cleaned

    def _read_images(self, images: list, annotations: list, skip_empty: bool) -> list[_CocoImage]:
        by_image = group_annotations(annotations, images, self.annotation_file, self.errors)
        kept: list[_CocoImage] = []
        seen: set = set()
        for record in images:
            image_id = _image_id(record)
            source = f"{self.annotation_file}#image {image_id}"
            try:
                if not isinstance(record, dict) or not isinstance(record.get("file_name"), str):
                    raise DataError(f"image record {record!r} has no 'file_name'", "bad image record")
                if image_id is None:
                    raise DataError(f"image record {record!r} has no integer or string 'id'", "bad image record")
                if image_id in seen:
                    raise DataError("duplicate image id", "bad image record")
                seen.add(image_id)
                path = self.image_dir / record["file_name"]
                check_image_file(path)
                width, height = image_size(record, path)
                boxes, categories = [], []
                for ann_source, ann in by_image.get(image_id, []):
                    source = f"{ann_source} (image {image_id})"
                    if ann.get("iscrowd", 0):
                        continue
                    if ann.get("category_id") not in self._category_index:
                        raise DataError(f"unknown category id {ann.get('category_id')!r}", "unknown category")
                    boxes.append(check_box(xywh_to_xyxy(ann.get("bbox")), width, height))
                    categories.append(self._category_index[ann["category_id"]])
            except DataError as error:
                self.errors.reject(source, error)
                continue
            if skip_empty and not boxes:
                continue
            kept.append(_CocoImage(
                path=path, image_id=image_id, width=width, height=height,
                boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                categories=np.array(categories, dtype=np.int64),
                source=f"{self.annotation_file}#image {image_id}",
            ))
        return kept

    def _count_tokens(self, tokenizer: PreTrainedTokenizerBase | None) -> list[int]:
        """Tokens each category costs in a prompt: its WordPieces plus the ``"."`` after it."""
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        encoded = tokenizer(self.category_names, add_special_tokens=False)["input_ids"]
        costs = [len(ids) + 1 for ids in encoded]
        for name, cost in zip(self.category_names, costs):
            if _SPECIAL_TOKENS + cost > self.max_prompt_tokens:
                raise DataError(
                    f"{self.annotation_file}: category {name!r} alone needs {cost + _SPECIAL_TOKENS} "
                    f"tokens, more than max_prompt_tokens={self.max_prompt_tokens}", "bad category",
                )
        return costs

    def __len__(self) -> int:
        return len(self.images)

    def sample_prompt_categories(self, index: int, repeat: int = 0) -> list[int]:
        """The category indices of the prompt of ``index`` in the current epoch, in prompt order."""
        index = self._check_index(index)
        if self.fixed_prompt is not None:
            return list(range(len(self.category_ids)))
        image = self.images[index]
        rng = derive_rng(self.seed, self.epoch, index, STREAM_PROMPT, repeat)
        positives = sorted(set(image.categories.tolist()))
        rng.shuffle(positives)
        budget = None if self._token_costs is None else self.max_prompt_tokens - _SPECIAL_TOKENS
        chosen: list[int] = []
        for category in positives:
            cost = 0 if budget is None else self._token_costs[category]
            if budget is not None and cost > budget:
                continue  # this positive does not fit: its boxes are dropped for this read
            chosen.append(category)
            budget = None if budget is None else budget - cost
        num_negatives = self.max_prompt_categories - len(positives)
        if num_negatives > 0:
            positive_set = set(positives)
            negatives = [c for c in range(len(self.category_names)) if c not in positive_set]
            for category in rng.sample(negatives, min(num_negatives, len(negatives))):
                if budget is not None:
                    if self._token_costs[category] > budget:
                        break
                    budget -= self._token_costs[category]
                chosen.append(category)
        rng.shuffle(chosen)
        return chosen

    def get_sample(self, index: int, repeat: int = 0) -> GroundingSample:
        """The sample of ``index`` with this epoch's prompt; boxes in the file's pixels."""
        index = self._check_index(index)
        image = self.images[index]
        categories = self.sample_prompt_categories(index, repeat)
        prompt = self.fixed_prompt or build_class_prompt([self.raw_names[c] for c in categories])
        phrase_of = {category: phrase for phrase, category in enumerate(categories)}
        keep = np.array([c in phrase_of for c in image.categories.tolist()], dtype=bool)
        if not keep.all():
            logger.debug("%s: %d boxes dropped, their categories do not fit the prompt",
                         image.source, int((~keep).sum()))
        return GroundingSample(
            image_path=image.path,
            caption=prompt.caption,
            phrase_spans=prompt.spans,
            boxes=image.boxes[keep].copy(),
            box_phrases=[phrase_of[c] for c in image.categories[keep].tolist()],
            image_id=image.image_id,
            source=image.source,
            width=image.width,
            height=image.height,
            phrase_category_ids=[self.category_ids[c] for c in categories],
        )
