"""One training record: an image, a caption, its phrases and the boxes grounded to them.

Every data source (COCO detection, ODVG JSON Lines, MDETR COCO JSON) is turned into the same
`GroundingSample`, so the transforms and the collator see one format. Detection images become a
sample only when they are read (``__getitem__``), because their prompt depends on randomly
sampled negative categories.

Example:
    >>> sample = GroundingSample(
    ...     image_path=Path("a.jpg"), caption="a red star", phrase_spans=[[(2, 10)]],
    ...     boxes=np.array([[1, 2, 30, 40]], dtype=np.float32), box_phrases=[0],
    ...     image_id="a", source="train.jsonl:1", width=64, height=48)
    >>> sample.phrase_texts()
    ['red star']
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

Span = tuple[int, int]

# Independent random streams drawn from the same (seed, epoch, index): changing one kind of
# randomness (e.g. adding a transform) leaves the others as they were.
STREAM_PROMPT = 0
STREAM_TRANSFORM = 1
STREAM_MIXING = 2
STREAM_PACKING = 3


@dataclass
class GroundingSample:
    """An image with a caption and boxes grounded to phrases of that caption.

    Attributes:
        image_path: the image file.
        caption: the text given to the language model.
        phrase_spans: for each phrase, one or more ``[start, end)`` character spans into ``caption``.
        boxes: ``[N, 4]`` float32 ``x1, y1, x2, y2`` in pixels of the image as it currently is
            (the file's pixels when read; network-input pixels after the transforms).
        box_phrases: for each box, the index of its phrase in ``phrase_spans``.
        image_id: the id given by the annotation file (COCO id, or the file name for JSON Lines).
        source: where the record comes from, for error messages: ``"file:line"`` or
            ``"file#image_id"``.
        width: image width in pixels, if known (updated by the transforms).
        height: image height in pixels, if known (updated by the transforms).
        phrase_category_ids: for detection data, the category id of each phrase (``None`` for
            grounding data).
        segmentations: per box, its checked COCO ``segmentation`` (polygons or RLE, in the file's
            pixels), or ``None`` when some box has none; decoded into ``masks`` when the image is
            read (`GroundingDatasetBase.load`), so a dataset holds only the file's small records.
        masks: ``[N, H, W]`` uint8 (0/1) instance masks of the boxes in pixels of the image as it
            currently is (kept consistent with ``boxes`` by the transforms), or ``None``.
    """

    image_path: Path
    caption: str
    phrase_spans: list[list[Span]]
    boxes: np.ndarray
    box_phrases: list[int]
    image_id: int | str
    source: str
    width: int | None = None
    height: int | None = None
    phrase_category_ids: list[int | str] | None = None
    segmentations: list[object] | None = None
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)  # [N, 4]
        if len(self.box_phrases) != self.boxes.shape[0]:
            raise ValueError(
                f"{self.source}: {self.boxes.shape[0]} boxes but {len(self.box_phrases)} phrase "
                "indices; give one phrase index per box"
            )
        if self.segmentations is not None and len(self.segmentations) != self.boxes.shape[0]:
            raise ValueError(f"{self.source}: {self.boxes.shape[0]} boxes but {len(self.segmentations)} "
                             "segmentations; give one per box")
        if self.masks is not None and (self.masks.ndim != 3 or self.masks.shape[0] != self.boxes.shape[0]):
            raise ValueError(f"{self.source}: masks of shape {tuple(self.masks.shape)} for "
                             f"{self.boxes.shape[0]} boxes; give [N, H, W]")
        if any(not 0 <= p < len(self.phrase_spans) for p in self.box_phrases):
            raise ValueError(
                f"{self.source}: box phrase indices {self.box_phrases} out of range for "
                f"{len(self.phrase_spans)} phrases"
            )

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def phrase_texts(self) -> list[str]:
        """The text of each phrase: its spans in the caption joined by a space."""
        return [" ".join(self.caption[s:e] for s, e in spans) for spans in self.phrase_spans]

    def replace(self, **changes: object) -> "GroundingSample":
        """A copy with some fields changed (boxes are copied, never shared)."""
        changes.setdefault("boxes", self.boxes.copy())
        return dataclasses.replace(self, **changes)


@dataclass
class GroundingExample:
    """What a dataset's ``__getitem__`` returns: the network-ready image and its sample.

    Attributes:
        image: ``[3, H, W]`` float32, BGR-normalised like `glip.images.preprocess`.
        sample: the sample after the transforms: caption and spans possibly changed by the flip,
            boxes in pixels of ``image``.
        original_size: ``(h, w)`` of the image as read from the file.
    """

    image: torch.Tensor
    sample: GroundingSample
    original_size: tuple[int, int]

    @property
    def source(self) -> str:
        return self.sample.source

    @property
    def image_id(self) -> int | str:
        return self.sample.image_id


def derive_seed(seed: int, epoch: int, index: int, stream: int, repeat: int = 0) -> int:
    """A 64-bit seed that depends only on ``(seed, epoch, index, stream, repeat)``.

    Used so that a record draws the same prompt and augmentation whichever worker reads it and
    whether or not the run was resumed. ``repeat`` numbers the reads of one record within an epoch
    (by `MixedDataset` when it draws a dataset more times than its size), so that they differ.
    """
    entropy = [seed, epoch, index, stream] + ([repeat] if repeat else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def derive_rng(seed: int, epoch: int, index: int, stream: int, repeat: int = 0) -> random.Random:
    """A `random.Random` seeded by :func:`derive_seed`."""
    return random.Random(derive_seed(seed, epoch, index, stream, repeat))
