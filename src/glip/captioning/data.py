"""Caption training data: each image with one of its reference captions, drawn per epoch.

`CaptionTrainingSet` reads caption files (`glip.data.captions`), checks at once that every image
exists (a missing image is an error naming the file and the record, never a silently smaller set),
and yields an image resized to one of the training sizes with one caption drawn from the image's
references by (seed, epoch, index), so a resumed run sees the same pairs. `CaptionCollator`
pads images and token ids into a `CaptionBatch`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from glip.caption_tokens import encode_caption, pad_captions
from glip.data.captions import CaptionRecord, read_captions
from glip.data.sample import derive_rng
from glip.data.validation import DataError
from glip.images import PreprocessConfig, batch_images, load_image, preprocess

_CAPTION_STREAM = 7  # derive_rng stream of the caption draw


def require_images(records: Sequence[CaptionRecord], source: str) -> None:
    """Raise one line naming the first missing image (and how many are missing)."""
    missing = [record for record in records if not record.image.is_file()]
    if missing:
        first = missing[0]
        raise DataError(f"{source}: {len(missing)} of {len(records)} images are missing, e.g. {str(first.image)!r} "
                        f"(image_id {first.image_id!r}); check the image folder (images: ...) or the file's paths",
                        "missing image")


def read_caption_sources(sources: Sequence[tuple[str, str | None]], on_error: str = "raise",
                         need_captions: bool = True) -> list[CaptionRecord]:
    """The records of ``(annotations, images)`` files, images checked; with ``need_captions``,
    images without a reference caption are left out (an error if none is left)."""
    records: list[CaptionRecord] = []
    for annotations, images in sources:
        read = read_captions(annotations, images, on_error=on_error)
        require_images(read, annotations)
        records.extend(r for r in read if r.captions or not need_captions)
    if not records:
        raise DataError(f"no image with a caption in {', '.join(a for a, _ in sources)}", "no captions")
    return records


@dataclass
class CaptionExample:
    image: torch.Tensor  # [3, H, W] normalised network input
    token_ids: list[int]  # [CLS] caption [SEP]
    source: str


@dataclass
class CaptionBatch:
    """images [B, 3, H, W] (padded), input_ids / attention_mask [B, L] (padded at the end)."""

    images: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    sources: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "CaptionBatch":
        move = {name: getattr(self, name).to(device, non_blocking=non_blocking)
                for name in ("images", "input_ids", "attention_mask")}
        return dataclasses.replace(self, **move)

    def describe(self) -> str:
        return "; ".join(self.sources)


class CaptionTrainingSet(Dataset):
    """Images with one reference caption each (see the module docstring)."""

    def __init__(self, records: Sequence[CaptionRecord], tokenizer, max_tokens: int, min_sizes: Sequence[int],
                 max_size: int, input_config: PreprocessConfig, seed: int = 0) -> None:
        self.records = [record for record in records if record.captions]
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.min_sizes = list(min_sizes)
        self.max_size = max_size
        self.input_config = input_config
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> CaptionExample:
        record = self.records[index]
        rng = derive_rng(self.seed, self.epoch, index, _CAPTION_STREAM)
        caption = rng.choice(record.captions)
        size = rng.choice(self.min_sizes)
        config = dataclasses.replace(self.input_config, min_size=size, max_size=self.max_size)
        image = preprocess(load_image(record.image, name=str(record.image)), config)  # [3, H, W]
        return CaptionExample(image, encode_caption(self.tokenizer, caption, self.max_tokens),
                              f"{record.image} ({caption!r})")


class CaptionCollator:
    def __init__(self, size_divisibility: int = 32) -> None:
        self.size_divisibility = size_divisibility

    def __call__(self, examples: Sequence[CaptionExample]) -> CaptionBatch:
        sizes = [tuple(example.image.shape[1:]) for example in examples]
        images = batch_images([example.image for example in examples], sizes, self.size_divisibility)
        input_ids, attention_mask = pad_captions([example.token_ids for example in examples])
        return CaptionBatch(images.tensor, input_ids, attention_mask, [example.source for example in examples])


def caption_sources(files: Sequence[object]) -> list[tuple[str, str | None]]:
    """``CaptionFileSection``s -> (annotations, images) pairs."""
    return [(str(Path(f.annotations)), f.images) for f in files]
