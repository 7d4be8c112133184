"""The training data of a run: its datasets (COCO detection, ODVG or MDETR grounding, pseudo-labelled
ODVG shards) built with one transform, grounding captions packed with other captions on request (on
by default for pseudo-labelled data), mixed by their weights when there are several, unreadable
items skipped on request.

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
from glip.data.grounding import GroundingJsonlDataset, MdetrCocoDataset, SampleListDataset
from glip.data.mixing import MixedDataset
from glip.data.packing import CaptionPacking
from glip.data.pseudo import PseudoLabelledDataset
from glip.data.transforms import Compose
from glip.data.validation import DataError

logger = logging.getLogger(__name__)


class PackingSource(Protocol):
    """Caption packing settings of a dataset (`glip.data.packing`)."""

    enabled: bool | None  # None = on for pseudo sources, off for the others
    no_negatives_prob: float
    all_negatives_prob: float
    max_negatives: int


class DatasetSource(Protocol):
    """One dataset of a run (the training config's ``data.datasets`` entries have these fields)."""

    type: str  # coco | odvg | mdetr | pseudo
    annotations: str  # the annotation file; pseudo: a directory or glob of .jsonl shards
    images: str  # the directory the annotations' file names are relative to; pseudo: "" = the shards' folder
    weight: float  # sampling weight among several datasets
    max_prompt_categories: int  # detection prompts: positives plus random negatives
    on_error: str  # skip | raise
    min_score: float | None  # pseudo: regions scored at or below it are dropped
    packing: PackingSource


def packs_captions(source: DatasetSource) -> bool:
    """Whether ``source``'s captions are packed: as configured, else only for pseudo-labelled data."""
    enabled = source.packing.enabled
    if enabled and source.type == "coco":
        raise ValueError("caption packing applies to grounding captions (odvg, mdetr, pseudo), not to coco")
    return enabled if enabled is not None else source.type == "pseudo"


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
    are cut to it, packed captions stay within it)."""
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
        elif source.type == "pseudo":
            dataset = PseudoLabelledDataset(source.annotations, source.images or None, min_score=source.min_score,
                                            on_error=source.on_error, seed=seed, transform=transform)
        else:
            raise ValueError(f"unknown dataset type '{source.type}': use coco, odvg, mdetr or pseudo")
        if packs_captions(source) and isinstance(dataset, SampleListDataset):
            packing = source.packing
            dataset.pack_captions(CaptionPacking(packing.no_negatives_prob, packing.all_negatives_prob,
                                                 packing.max_negatives), max_prompt_tokens)
        datasets.append(SkipUnreadable(dataset) if source.on_error == "skip" else dataset)
    if len(datasets) == 1:
        return datasets[0]
    return MixedDataset(datasets, [source.weight for source in sources], seed=seed)
