"""Training and evaluation transforms that keep the image, the boxes and the caption consistent.

Every transform is called as ``transform(image, sample, rng)`` and returns ``(image, sample)``:

- ``image``: a PIL RGB image, or after `Normalize` the ``[3, H, W]`` network tensor;
- ``sample``: a `GroundingSample` whose boxes (and instance ``masks``, when it has them) are in
  pixels of ``image`` (a new object; the input sample is left untouched);
- ``rng``: a `random.Random`. The datasets derive it from ``(seed, epoch, index)``, so a record gets
  the same augmentation in every worker and after a resume.

Boxes use the continuous pixel convention: ``x1, y1, x2, y2`` are positions on the pixel grid's
edges, the image spans ``[0, W] x [0, H]``, so a box's width is ``x2 - x1`` (no ``+ 1``).

Example:
    >>> transform = build_train_transforms()
    >>> image, sample = transform(pil_image, sample, random.Random(0))  # doctest: +SKIP
    >>> image.shape  # doctest: +SKIP
    torch.Size([3, 608, 912])
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from glip.data.sample import GroundingSample, Span
from glip.images import PreprocessConfig, resized_size

# Official multi-scale training sizes of GLIP (480..800, step 32).
DEFAULT_TRAIN_SIZES = tuple(range(480, 801, 32))

# Words that name a side; swapped by the horizontal flip (whole words, case kept).
_SIDE_WORD = re.compile(r"\b(left|right)(most)?\b", re.IGNORECASE)
_OPPOSITE = {"left": "right", "right": "left"}


class Transform(Protocol):
    def __call__(self, image: Any, sample: GroundingSample, rng: random.Random) -> tuple[Any, GroundingSample]:
        ...


class Compose:
    """Apply transforms in order, passing the same ``rng`` to each."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Any, sample: GroundingSample, rng: random.Random) -> tuple[Any, GroundingSample]:
        for transform in self.transforms:
            image, sample = transform(image, sample, rng)
        return image, sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class RandomResize:
    """Resize so the short side is one of ``min_sizes`` (drawn uniformly), the long side capped.

    The size follows `glip.images.resized_size` (the official ``Resize``); the resampling is PIL's
    bilinear, as in `glip.images.preprocess`. Boxes are scaled by ``new_w / w`` and ``new_h / h``;
    instance masks are resampled bilinearly (pixel centres, the boxes' continuous frame) and kept
    where at least half covered, like a polygon rasterised at the new size (so the resized masks
    of two touching objects may share a pixel on their border).

    Args:
        min_sizes: candidate lengths of the shorter side; one value gives a deterministic resize.
        max_size: cap on the longer side (``None``: no cap).
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int | None = 1333) -> None:
        if isinstance(min_sizes, int):
            min_sizes = [min_sizes]
        if len(min_sizes) == 0 or any(int(s) <= 0 for s in min_sizes):
            raise ValueError(f"RandomResize needs one or more positive sizes, got {min_sizes!r}")
        if max_size is not None and max_size <= 0:
            raise ValueError(f"RandomResize max_size must be positive or None, got {max_size}")
        self.min_sizes = [int(s) for s in min_sizes]
        self.max_size = max_size

    def __call__(
        self, image: Image.Image, sample: GroundingSample, rng: random.Random
    ) -> tuple[Image.Image, GroundingSample]:
        size = self.min_sizes[0] if len(self.min_sizes) == 1 else rng.choice(self.min_sizes)
        width, height = image.size
        new_h, new_w = resized_size(width, height, size, self.max_size)
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        scale = np.array([new_w / width, new_h / height] * 2, dtype=np.float32)
        boxes = sample.boxes * scale  # [N, 4]
        masks = sample.masks
        if masks is not None and masks.shape[1:] != (new_h, new_w):
            masks = resize_masks(masks, new_h, new_w)
        return image, sample.replace(boxes=boxes.astype(np.float32), width=new_w, height=new_h, masks=masks)

    def __repr__(self) -> str:
        return f"RandomResize(min_sizes={self.min_sizes}, max_size={self.max_size})"


class RandomHorizontalFlip:
    """Mirror the image with probability ``p``, the boxes and masks with it, and swap "left" and "right".

    Boxes: ``x1' = W - x2``, ``x2' = W - x1`` (continuous convention; the official code subtracts
    one more pixel, a legacy of its ``+ 1`` box widths). Caption: the whole words "left"/"right"
    (and "leftmost"/"rightmost") are exchanged, case kept, and every phrase span is recomputed so
    that it covers the same words as before (the two words differ in length). See
    :func:`swap_left_right`.
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(
        self, image: Image.Image, sample: GroundingSample, rng: random.Random
    ) -> tuple[Image.Image, GroundingSample]:
        if self.p <= 0.0 or rng.random() >= self.p:
            return image, sample
        width = image.size[0]
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes = sample.boxes.copy()  # [N, 4]
        boxes[:, 0] = width - sample.boxes[:, 2]
        boxes[:, 2] = width - sample.boxes[:, 0]
        masks = None if sample.masks is None else np.ascontiguousarray(sample.masks[:, :, ::-1])  # [N, H, W]
        caption, spans = swap_left_right(sample.caption, sample.phrase_spans)
        return image, sample.replace(boxes=boxes, caption=caption, phrase_spans=spans, masks=masks)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def resize_masks(masks: np.ndarray, height: int, width: int, chunk: int = 16) -> np.ndarray:
    """``[N, h, w]`` uint8 0/1 masks -> ``[N, height, width]``: bilinear, kept where >= 0.5.

    Resampled ``chunk`` masks at a time, so a crowded image never holds all of them as floats.
    """
    resized = np.zeros((masks.shape[0], height, width), dtype=np.uint8)  # [N, H, W]
    for start in range(0, masks.shape[0], chunk):
        block = torch.from_numpy(masks[start:start + chunk]).float()[:, None]  # [n, 1, h, w]
        scaled = torch.nn.functional.interpolate(block, size=(height, width), mode="bilinear", align_corners=False)
        resized[start:start + chunk] = (scaled[:, 0] >= 0.5).numpy()
    return resized


def _swap_word(word: str) -> str:
    """``left`` <-> ``right`` (optionally ``...most``), keeping upper/title/lower case."""
    match = _SIDE_WORD.fullmatch(word)
    assert match is not None
    swapped = _OPPOSITE[match.group(1).lower()] + (match.group(2) or "").lower()
    if word.isupper():
        return swapped.upper()
    if word[0].isupper():
        return swapped[0].upper() + swapped[1:]
    return swapped


def swap_left_right(caption: str, spans: Sequence[Sequence[Span]]) -> tuple[str, list[list[Span]]]:
    """Swap the words "left" and "right" in a caption and move the character spans with the text.

    A span boundary inside a swapped word moves to that word's start (for a span start) or end (for
    a span end), so a span never cuts a word it did not cut before.

    Example:
        >>> swap_left_right("the left star and the right circle", [[(4, 13)], [(22, 34)]])
        ('the right star and the left circle', [[(4, 14)], [(23, 34)]])
    """
    pieces: list[str] = []
    # (old_start, old_end, new_start, new_end) of every swapped word, in order.
    moves: list[tuple[int, int, int, int]] = []
    last = 0
    new_length = 0
    for match in _SIDE_WORD.finditer(caption):
        pieces.append(caption[last : match.start()])
        new_length += match.start() - last
        word = _swap_word(match.group(0))
        moves.append((match.start(), match.end(), new_length, new_length + len(word)))
        pieces.append(word)
        new_length += len(word)
        last = match.end()
    if not moves:
        return caption, [list(phrase) for phrase in spans]
    pieces.append(caption[last:])
    new_caption = "".join(pieces)

    def move(position: int, is_end: bool) -> int:
        shift = 0
        for old_start, old_end, new_start, new_end in moves:
            if position >= old_end:
                shift = new_end - old_end
            elif position > old_start:  # inside a swapped word
                return new_end if is_end else new_start
            else:
                break
        return position + shift

    new_spans = [[(move(s, False), move(e, True)) for s, e in phrase] for phrase in spans]
    return new_caption, new_spans


class Normalize:
    """PIL RGB image -> ``[3, H, W]`` float32 network input, exactly as `glip.images.preprocess`.

    BGR channel order, 0..255 scale (``ToTensor`` then ``* 255`` in float32), then
    ``(x - mean) / std`` with the BGR mean/std of ``config``. No resizing.
    """

    def __init__(self, config: PreprocessConfig | None = None) -> None:
        config = config or PreprocessConfig()
        self.mean = torch.tensor(config.pixel_mean, dtype=torch.float32)[:, None, None]  # [3, 1, 1]
        self.std = torch.tensor(config.pixel_std, dtype=torch.float32)[:, None, None]  # [3, 1, 1]

    def __call__(
        self, image: Image.Image, sample: GroundingSample, rng: random.Random
    ) -> tuple[torch.Tensor, GroundingSample]:
        if not isinstance(image, Image.Image) or image.mode != "RGB":
            raise TypeError(f"{sample.source}: Normalize expects an RGB PIL image, got {image!r}")
        rgb = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # [H, W, 3]
        x = torch.from_numpy(bgr).permute(2, 0, 1).float().div(255).mul(255)  # [3, H, W]
        return (x - self.mean) / self.std, sample

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def build_train_transforms(
    min_sizes: Sequence[int] = DEFAULT_TRAIN_SIZES,
    max_size: int | None = 1333,
    flip: float = 0.5,
    config: PreprocessConfig | None = None,
) -> Compose:
    """The official GLIP training augmentation: multi-scale resize, horizontal flip, normalise.

    Args:
        min_sizes: candidate short sides (official: 480..800 in steps of 32).
        max_size: cap on the long side.
        flip: probability of the horizontal flip (0 disables it).
        config: mean/std of the model input (defaults to `PreprocessConfig()`).
    """
    transforms: list[Transform] = [RandomResize(min_sizes, max_size)]
    if flip > 0:
        transforms.append(RandomHorizontalFlip(flip))
    transforms.append(Normalize(config))
    return Compose(transforms)


def build_eval_transforms(
    min_size: int = 800, max_size: int | None = 1333, config: PreprocessConfig | None = None
) -> Compose:
    """Deterministic resize and normalisation: the same tensor as `glip.images.preprocess`."""
    return Compose([RandomResize([min_size], max_size), Normalize(config)])
