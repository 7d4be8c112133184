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
  ``skip_empty=True``;
- instance masks: when every non-crowd annotation of an image has a ``segmentation`` (polygons or
  RLE), the sample carries them and the training target gets ``masks`` (decoded when the image is
  read, see `glip.data.masks`); otherwise the image trains with boxes only.

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

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from glip.data.base import GroundingDatasetBase
from glip.data.coco_json import CocoFile, read_coco, read_json_file, xywh_to_xyxy
from glip.data.masks import check_segmentation
from glip.data.sample import STREAM_PROMPT, GroundingSample, derive_rng
from glip.data.transforms import Transform
from glip.data.validation import DataError, RecordErrors, check_box, check_image_file, read_image_size
from glip.prompts import SPECIAL_TOKENS, Prompt, build_class_prompt, piece_token_costs
from glip.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

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
    segmentations: list | None = None  # per box, its COCO segmentation; None unless every box has one


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
        DataError: the file is missing or not COCO JSON, a category is faulty (never skipped), or
            (with ``on_error="raise"``) a record is faulty. Messages name the file and the record.
            The file's checks are those of `glip.data.coco_json.read_coco`, shared with evaluation;
            training adds that the image file exists and that boxes lie inside the image.
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
        coco = read_coco(read_json_file(self.annotation_file), self.errors)
        self.category_ids = [c.id for c in coco.categories]
        self.raw_names = [c.name for c in coco.categories]
        self.category_names = [c.clean_name for c in coco.categories]
        self._category_index = {cid: i for i, cid in enumerate(self.category_ids)}
        self.images = self._read_images(coco, skip_empty)
        self.errors.summarize(coco.num_image_records, len(self.images))
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

    def _read_images(self, coco: CocoFile, skip_empty: bool) -> list[_CocoImage]:
        """The images to train on: the file exists, and every non-crowd box lies in the image."""
        by_image = coco.annotations_by_image()
        kept: list[_CocoImage] = []
        for record in coco.images:
            source = f"{self.annotation_file}#image {record.id}"
            try:
                if record.file_name is None:
                    raise DataError("image record has no 'file_name' (or 'coco_url')", "bad image record")
                path = self.image_dir / record.file_name
                check_image_file(path)
                width, height = (record.width, record.height) if record.width is not None else read_image_size(path)
                boxes, categories, segmentations = [], [], []
                for annotation in by_image.get(record.id, []):
                    if annotation.iscrowd:
                        continue
                    source = annotation.source
                    boxes.append(check_box(xywh_to_xyxy(annotation.bbox), width, height))
                    categories.append(self._category_index[annotation.category_id])
                    if annotation.segmentation is not None and record.width is None:  # size read from the file
                        check_segmentation(annotation.segmentation, width, height)
                    segmentations.append(annotation.segmentation)
            except DataError as error:
                self.errors.reject(source, error)
                continue
            if skip_empty and not boxes:
                continue
            kept.append(_CocoImage(
                path=path, image_id=record.id, width=width, height=height,
                boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                categories=np.array(categories, dtype=np.int64),
                source=f"{self.annotation_file}#image {record.id}",
                segmentations=segmentations if segmentations and None not in segmentations else None,
            ))
        return kept

    def _count_tokens(self, tokenizer: PreTrainedTokenizerBase | None) -> list[int]:
        """Tokens each category costs in a prompt: its WordPieces plus the ``"."`` after it."""
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        costs = piece_token_costs(self.category_names, tokenizer)
        for name, cost in zip(self.category_names, costs):
            if SPECIAL_TOKENS + cost > self.max_prompt_tokens:
                raise DataError(
                    f"{self.annotation_file}: category {name!r} alone needs {cost + SPECIAL_TOKENS} tokens, more "
                    f"than max_prompt_tokens={self.max_prompt_tokens}: shorten its name or raise the limit",
                    "bad category",
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
        budget = None if self._token_costs is None else self.max_prompt_tokens - SPECIAL_TOKENS
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
            segmentations=None if image.segmentations is None else [
                segmentation for segmentation, kept in zip(image.segmentations, keep) if kept],
        )
