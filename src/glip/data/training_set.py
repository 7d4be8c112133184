"""The training data of a run: its datasets (COCO detection, ODVG or MDETR grounding) built with one
transform, mixed by their weights when there are several, unreadable items skipped on request.

Example:
    >>> transform = build_train_transforms([320], 480, 0.5)  # doctest: +SKIP
    >>> data = build_training_dataset(config.data.datasets, transform, max_prompt_tokens=256)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from torch.utils.data import Dataset

from glip.data.coco import CocoDetectionDataset
from glip.data.grounding import GroundingJsonlDataset, MdetrCocoDataset
from glip.data.mixing import MixedDataset
from glip.data.transforms import Compose
from glip.data.validation import DataError

logger = logging.getLogger(__name__)


class DatasetSource(Protocol):
    """One dataset of a run (the training config's ``data.datasets`` entries have these fields)."""

    type: str  # coco | odvg | mdetr
    annotations: str  # the annotation file
    images: str  # the directory the annotations' file names are relative to
    weight: float  # sampling weight among several datasets
    max_prompt_categories: int  # detection prompts: positives plus random negatives
    on_error: str  # skip | raise


class SkipUnreadable(Dataset):
    """A dataset whose items that fail to load (an image that cannot be decoded) are replaced by
    the next readable item, with a warning: ``on_error="skip"`` for faults found only at training
    time. The replacement depends only on the index, so runs stay reproducible and resumable."""

    def __init__(self, dataset: Dataset, max_tries: int = 16) -> None:
        self.dataset = dataset
        self.max_tries = max_tries

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def load(self, index: int, repeat: int = 0) -> Any:
        for attempt in range(self.max_tries):
            candidate = (index + attempt) % len(self.dataset)
            try:
                return self.dataset.load(candidate, repeat)
            except DataError as error:
                logger.warning("skipping an unreadable item: %s", error)
        raise DataError(f"{self.max_tries} items in a row from index {index} cannot be read; check the data")

    def __getitem__(self, index: int) -> Any:
        return self.load(index)


def build_training_dataset(sources: Sequence[DatasetSource], transform: Compose, max_prompt_tokens: int,
                           seed: int = 0) -> Dataset:
    """The datasets of ``sources``, each read through ``transform``; several are mixed by their
    weights (`MixedDataset`). ``max_prompt_tokens``: the model's token window (detection prompts
    are cut to it)."""
    if not sources:
        raise ValueError("data.datasets is empty: add at least one dataset (type, annotations, images)")
    datasets = []
    for source in sources:
        if source.type == "coco":
            dataset = CocoDetectionDataset(source.annotations, source.images, source.max_prompt_categories,
                                           max_prompt_tokens=max_prompt_tokens, on_error=source.on_error,
                                           seed=seed, transform=transform)
        elif source.type == "odvg":
            dataset = GroundingJsonlDataset(source.annotations, source.images, on_error=source.on_error,
                                            seed=seed, transform=transform)
        elif source.type == "mdetr":
            dataset = MdetrCocoDataset(source.annotations, source.images, on_error=source.on_error, seed=seed,
                                       transform=transform)
        else:
            raise ValueError(f"unknown dataset type '{source.type}': use coco, odvg or mdetr")
        datasets.append(SkipUnreadable(dataset) if source.on_error == "skip" else dataset)
    if len(datasets) == 1:
        return datasets[0]
    return MixedDataset(datasets, [source.weight for source in sources], seed=seed)
