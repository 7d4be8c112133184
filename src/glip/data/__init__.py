"""Training data: COCO detection, ODVG / MDETR grounding, pseudo-labelled shards, caption packing,
mixing, transforms and collation; instance masks in COCO form (`glip.data.masks`).

Every source yields `GroundingExample`s (a network-ready image and its `GroundingSample`);
`GroundingCollator` turns a list of them into a `TrainingBatch` for the trainer.

Example:
    >>> from torch.utils.data import DataLoader
    >>> from glip.data import CocoDetectionDataset, GroundingCollator
    >>> dataset = CocoDetectionDataset("instances_train2017.json", "train2017")  # doctest: +SKIP
    >>> loader = DataLoader(dataset, batch_size=2, shuffle=True,
    ...                     collate_fn=GroundingCollator())  # doctest: +SKIP
"""

from glip.data.base import GroundingDatasetBase, open_training_image
from glip.data.coco import CocoDetectionDataset
from glip.data.collate import GroundingCollator, TrainingBatch
from glip.data.grounding import GroundingJsonlDataset, MdetrCocoDataset
from glip.data.masks import mask_to_rle, rle_to_mask
from glip.data.mixing import MixedDataset
from glip.data.packing import CaptionPacker, CaptionPacking
from glip.data.pseudo import PseudoLabelledDataset
from glip.data.sample import GroundingExample, GroundingSample
from glip.data.transforms import (
    Compose,
    Normalize,
    RandomHorizontalFlip,
    RandomResize,
    build_eval_transforms,
    build_train_transforms,
    swap_left_right,
)
from glip.data.validation import DataError

__all__ = [
    "CaptionPacker",
    "CaptionPacking",
    "CocoDetectionDataset",
    "Compose",
    "DataError",
    "GroundingCollator",
    "GroundingDatasetBase",
    "GroundingExample",
    "GroundingJsonlDataset",
    "GroundingSample",
    "MdetrCocoDataset",
    "MixedDataset",
    "Normalize",
    "PseudoLabelledDataset",
    "RandomHorizontalFlip",
    "RandomResize",
    "TrainingBatch",
    "build_eval_transforms",
    "build_train_transforms",
    "mask_to_rle",
    "open_training_image",
    "rle_to_mask",
    "swap_left_right",
]
