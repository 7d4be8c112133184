"""Collate grounding examples into a padded training batch with token-level targets.

The collator tokenizes each caption to the model's window (``max_length`` tokens, padded), maps
every phrase's character spans to tokens with `glip.prompts.create_positive_map` (the official
mapping) and gives each box the binary token row of its phrase: the target of the token-level
focal loss (`glip.training.loss.GLIPLoss`).

A phrase whose spans fall beyond the window (truncated caption), or cover no token, cannot be
scored: its boxes are dropped with a warning naming the record, so the batch never holds a box
whose target row is empty. (`CocoDetectionDataset` keeps its prompts inside the window, so this
concerns long captions of grounding data.)

Example:
    >>> collate = GroundingCollator()
    >>> loader = DataLoader(dataset, batch_size=4, collate_fn=collate)  # doctest: +SKIP
    >>> batch = next(iter(loader))  # doctest: +SKIP
    >>> batch.images.shape, batch.input_ids.shape  # doctest: +SKIP
    (torch.Size([4, 3, 800, 1216]), torch.Size([4, 256]))
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from glip.data.sample import GroundingExample
from glip.images import ImageBatch, batch_images
from glip.prompts import create_positive_map
from glip.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class TrainingBatch:
    """A batch for the GLIP trainer.

    Attributes:
        images: ``[B, 3, H, W]`` float32 network input (BGR-normalised), zero-padded at the
            bottom/right to multiples of ``size_divisibility`` (32).
        image_sizes: per image, ``(h, w)`` of the transformed image before padding (the frame of
            the target boxes).
        original_sizes: per image, ``(h, w)`` as read from the file.
        input_ids: ``[B, L]`` int64 token ids, ``L = max_length`` (256), padded with 0.
        attention_mask: ``[B, L]`` int64, 1 on real tokens (``[CLS]`` and ``[SEP]`` included).
        targets: per image a dict:
            ``boxes`` ``[N, 4]`` float32 ``x1, y1, x2, y2`` in network-input pixels;
            ``positive_map`` ``[N, L]`` float32, 1 on the tokens of the box's phrase, 0 elsewhere;
            ``phrase_index`` ``[N]`` int64, the box's phrase in ``phrase_spans`` of its sample.
            ``N`` may be 0 (``[0, 4]``, ``[0, L]``, ``[0]``).
            Detection data only (every phrase names a category): ``labels`` ``[N]`` int64, the
            `category_key` of each box's category, and ``token_labels`` ``[L]`` int64, that of the
            category name each token belongs to (-1 elsewhere); the "same category in another
            image" targets of GLIPv2's inter-image loss. Grounding data has neither key.
            When every box of the record has an instance mask: ``masks`` ``[N, H, W]`` uint8 (0/1)
            at the transformed image's size before padding (``image_sizes``); else no such key.
        captions: per image, the caption tokenized (after the flip's left/right swap).
        phrase_spans: per image, each phrase's character spans in its caption.
        image_ids: per image, the id from the annotation file.
        sources: per image, where its record is (``"file:line"`` / ``"file#image id"``), to name
            the images of a batch whose loss is not finite.
    """

    images: torch.Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    captions: list[str]
    phrase_spans: list[list[list[tuple[int, int]]]]
    image_ids: list[int | str]
    sources: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "TrainingBatch":
        """The batch with every tensor (targets included) on ``device``."""
        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return TrainingBatch(
            images=move(self.images),
            image_sizes=list(self.image_sizes),
            original_sizes=list(self.original_sizes),
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            targets=[{key: move(value) for key, value in target.items()} for target in self.targets],
            captions=list(self.captions),
            phrase_spans=list(self.phrase_spans),
            image_ids=list(self.image_ids),
            sources=list(self.sources),
        )

    def image_batch(self) -> ImageBatch:
        """The images as a `glip.images.ImageBatch` (what the predictor side uses)."""
        return ImageBatch(self.images, list(self.image_sizes), list(self.original_sizes))

    def describe(self) -> str:
        """One line naming every image of the batch, for error messages."""
        return "; ".join(f"{source} (image id {image_id})" for source, image_id in zip(self.sources, self.image_ids))


def category_key(name: str) -> int:
    """A stable non-negative int64 for a category name (case and outer spaces ignored): equal names
    give equal keys in every process and every dataset, so "person" of two datasets is one class."""
    digest = hashlib.blake2b(name.strip().lower().encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class GroundingCollator:
    """``collate_fn`` for a DataLoader over the grounding datasets: examples -> `TrainingBatch`.

    Args:
        tokenizer: defaults to `glip.tokenizer.load_tokenizer` (bert-base-uncased).
        max_length: the text window (256 for the official models).
        size_divisibility: pad the images to multiples of this (32 = the coarsest Swin stride).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int = 256,
        size_divisibility: int = 32,
    ) -> None:
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        self.max_length = max_length
        self.size_divisibility = size_divisibility

    def _target(self, example: GroundingExample, encoding: object) -> dict[str, torch.Tensor]:
        sample = example.sample
        phrase_rows = create_positive_map(encoding, sample.phrase_spans, self.max_length) > 0  # [P, L]
        phrase_index = torch.as_tensor(sample.box_phrases, dtype=torch.int64).reshape(-1)  # [N]
        boxes = torch.from_numpy(sample.boxes.copy()).float().reshape(-1, 4)  # [N, 4]
        if phrase_index.numel() and (phrase_index.min() < 0 or phrase_index.max() >= len(sample.phrase_spans)):
            raise ValueError(f"{sample.source}: a box refers to phrase {phrase_index.tolist()} of "
                             f"{len(sample.phrase_spans)} phrases")
        scorable = phrase_rows.any(dim=1)  # [P]
        keep = scorable[phrase_index] if phrase_index.numel() else torch.zeros(0, dtype=torch.bool)  # [N]
        if not bool(keep.all()):
            texts = sample.phrase_texts()
            lost = sorted({int(p) for p in phrase_index[~keep]})
            logger.warning(
                "%s: dropping %d box(es) of phrase(s) %s: beyond the %d-token window or on no token",
                sample.source, int((~keep).sum()), [texts[p] for p in lost], self.max_length,
            )
        phrase_index = phrase_index[keep]
        target = {
            "boxes": boxes[keep],  # [N, 4]
            "positive_map": phrase_rows[phrase_index].float(),  # [N, L]
            "phrase_index": phrase_index,  # [N]
        }
        if sample.phrase_category_ids is not None:  # detection data: each phrase is a category name
            keys = torch.tensor([category_key(text) for text in sample.phrase_texts()], dtype=torch.int64)  # [P]
            token_labels = torch.full((self.max_length,), -1, dtype=torch.int64)  # [L]
            for phrase, key in enumerate(keys):
                token_labels[phrase_rows[phrase]] = key
            target["labels"] = keys[phrase_index]  # [N]
            target["token_labels"] = token_labels
        if sample.masks is not None:
            target["masks"] = self._masks(example, keep)  # [N, H, W]
        return target

    @staticmethod
    def _masks(example: GroundingExample, keep: torch.Tensor) -> torch.Tensor:
        """The instance masks of the kept boxes, uint8 ``[N, H, W]`` at the image's unpadded size."""
        masks = example.sample.masks  # [N, H, W]
        if masks.shape[1:] != tuple(example.image.shape[-2:]):
            raise ValueError(f"{example.source}: masks are {masks.shape[2]}x{masks.shape[1]} but the image is "
                             f"{example.image.shape[-1]}x{example.image.shape[-2]}: a transform resized the "
                             "image without its masks")
        return torch.from_numpy(np.ascontiguousarray(masks[keep.numpy()])).to(torch.uint8)

    def __call__(self, examples: Sequence[GroundingExample]) -> TrainingBatch:
        if len(examples) == 0:
            raise ValueError("cannot collate an empty list of examples")
        input_ids, attention_mask, targets = [], [], []
        for example in examples:
            encoding = self.tokenizer(
                example.sample.caption, max_length=self.max_length, padding="max_length",
                truncation=True, return_tensors="pt",
            )
            input_ids.append(encoding["input_ids"][0].long())  # [L]
            attention_mask.append(encoding["attention_mask"][0].long())  # [L]
            targets.append(self._target(example, encoding))
        images = batch_images(
            [example.image for example in examples],
            [example.original_size for example in examples],
            self.size_divisibility,
        )
        return TrainingBatch(
            images=images.tensor,
            image_sizes=images.image_sizes,
            original_sizes=images.original_sizes,
            input_ids=torch.stack(input_ids),  # [B, L]
            attention_mask=torch.stack(attention_mask),  # [B, L]
            targets=targets,
            captions=[example.sample.caption for example in examples],
            phrase_spans=[example.sample.phrase_spans for example in examples],
            image_ids=[example.image_id for example in examples],
            sources=[example.source for example in examples],
        )
