"""What every training dataset shares: lazy image reading, transforms and per-epoch randomness.

A dataset subclass only says how to build the `GroundingSample` of an index (``get_sample``);
this base reads the image, decodes the boxes' instance masks when the sample has segmentations,
applies the transform with a `random.Random` derived from ``(seed, epoch, index)`` and returns a
`GroundingExample`.

Resuming and workers: the randomness of index ``i`` in epoch ``e`` depends only on
``(seed, e, i)``, never on the worker or on how many items were drawn before. Call
``set_epoch(e)`` before iterating each epoch; with ``DataLoader(persistent_workers=True)`` the
workers keep their own copy of the dataset, so use non-persistent workers (the default) or
recreate the loader each epoch.
"""

from __future__ import annotations

import logging

from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from glip.data.masks import decode_masks
from glip.data.sample import STREAM_TRANSFORM, GroundingExample, GroundingSample, derive_rng
from glip.data.transforms import Transform, build_train_transforms
from glip.data.validation import DataError

logger = logging.getLogger(__name__)


def open_training_image(sample: GroundingSample) -> Image.Image:
    """Read a sample's image as RGB, in the pixel frame of its annotations.

    Pixels are taken as stored in the file, like the official training loader
    (``Image.open(path).convert("RGB")``: no EXIF rotation, alpha dropped), because COCO-style
    annotations and their recorded width/height refer to the stored pixels. When the stored size
    does not match the recorded one but the EXIF-rotated size does, the rotated image is used.

    Raises:
        DataError: the file is unreadable, or its size matches neither the recorded size nor its
            EXIF-rotated size (the boxes' frame is then unknown). It names ``sample.source``.
    """
    try:
        with Image.open(sample.image_path) as opened:
            opened.load()
            image = opened
            if sample.width is not None and sample.height is not None:
                expected = (sample.width, sample.height)
                if image.size != expected:
                    rotated = ImageOps.exif_transpose(opened)
                    if rotated.size != expected:
                        raise DataError(
                            f"{sample.source}: image {str(sample.image_path)!r} is "
                            f"{image.size[0]}x{image.size[1]} but the annotation says "
                            f"{expected[0]}x{expected[1]}",
                            "image size mismatch",
                        )
                    image = rotated
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"{sample.source}: image {str(sample.image_path)!r} is unreadable ({exc})", "unreadable image"
        ) from exc


class GroundingDatasetBase(Dataset):
    """Base of the training datasets: ``__getitem__(i)`` -> `GroundingExample`.

    Args:
        transform: called as ``transform(image, sample, rng)``; must end with `Normalize`.
            ``None`` uses :func:`build_train_transforms` (multi-scale resize, flip, normalise).
        seed: base seed of the per-record randomness (a non-negative integer).
    """

    def __init__(self, transform: Transform | None = None, seed: int = 0) -> None:
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.transform = transform if transform is not None else build_train_transforms()
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose prompts and augmentations ``__getitem__`` draws."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        raise NotImplementedError

    def get_sample(self, index: int, repeat: int = 0) -> GroundingSample:
        """The untransformed sample of ``index``: boxes (and ``segmentations``) in the file's pixels."""
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        length = len(self)
        if index < 0:
            index += length
        if not 0 <= index < length:
            raise IndexError(f"index {index} out of range for a dataset of {length} samples")
        return index

    def __getitem__(self, index: int) -> GroundingExample:
        return self.load(index)

    def load(self, index: int, repeat: int = 0) -> GroundingExample:
        """Read, transform and return item ``index``; ``repeat`` > 0 draws fresh randomness for a
        further read of the same item in the same epoch (see `MixedDataset`)."""
        index = self._check_index(index)
        sample = self.get_sample(index, repeat)
        image = open_training_image(sample)
        original_size = (image.height, image.width)
        if sample.width is None or sample.height is None:
            sample = sample.replace(width=image.width, height=image.height)
        if sample.segmentations is not None:  # decoded only now: a dataset keeps only the file's records
            try:
                masks = decode_masks(sample.segmentations, image.height, image.width)  # [N, H, W]
            except DataError as error:
                raise DataError(f"{sample.source}: {error}", error.kind, error.hint) from None
            sample = sample.replace(segmentations=None, masks=masks)
        rng = derive_rng(self.seed, self.epoch, index, STREAM_TRANSFORM, repeat)
        tensor, sample = self.transform(image, sample, rng)
        return GroundingExample(image=tensor, sample=sample, original_size=original_size)
