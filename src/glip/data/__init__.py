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

from glip.lazy_exports import lazy_exports

# Imported on first use: `glip.data.masks` (used by the shapes generator) must not load torch.
_LAZY = {
    "GroundingDatasetBase": "glip.data.base",
    "open_training_image": "glip.data.base",
    "CocoDetectionDataset": "glip.data.coco",
    "GroundingCollator": "glip.data.collate",
    "TrainingBatch": "glip.data.collate",
    "GroundingJsonlDataset": "glip.data.grounding",
    "MdetrCocoDataset": "glip.data.grounding",
    "mask_to_rle": "glip.data.masks",
    "rle_to_mask": "glip.data.masks",
    "MixedDataset": "glip.data.mixing",
    "CaptionPacker": "glip.data.packing",
    "CaptionPacking": "glip.data.packing",
    "PseudoLabelledDataset": "glip.data.pseudo",
    "GroundingExample": "glip.data.sample",
    "GroundingSample": "glip.data.sample",
    "Compose": "glip.data.transforms",
    "Normalize": "glip.data.transforms",
    "RandomHorizontalFlip": "glip.data.transforms",
    "RandomResize": "glip.data.transforms",
    "build_eval_transforms": "glip.data.transforms",
    "build_train_transforms": "glip.data.transforms",
    "swap_left_right": "glip.data.transforms",
    "DataError": "glip.data.validation",
}
__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
