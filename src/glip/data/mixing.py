"""Several datasets mixed with sampling weights, deterministically per (seed, epoch).

Each of the ``length`` positions of an epoch draws its dataset with probability proportional to
that dataset's weight (a weight belongs to the dataset, not to each of its samples: weights 1:1
draw half of the items from each dataset whatever their sizes). Within a dataset the items come
from a random permutation of it, walked in order and started again once used up, so a dataset
drawn fewer times than its size gives distinct items, and one drawn more often is repeated evenly;
each repeat of an item reads it with fresh randomness (another prompt and augmentation) when the
dataset has a ``load(index, repeat)`` method, as the datasets of this package do.

The mapping of a position to ``(dataset, inner index)`` depends only on ``(seed, epoch)``; it is
computed once per epoch (``O(length)`` integers) the first time an item is read.

Example:
    >>> mixed = MixedDataset([coco, goldg], weights=[1.0, 2.0])  # doctest: +SKIP
    >>> mixed.set_epoch(1)  # doctest: +SKIP
    >>> example = mixed[0]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from glip.data.sample import STREAM_MIXING, GroundingExample, derive_seed


class MixedDataset(Dataset):
    """Mix datasets with sampling weights.

    Args:
        datasets: the datasets; each needs ``__len__`` and ``__getitem__`` (``set_epoch`` is
            forwarded when they have it).
        weights: one non-negative weight per dataset, not all zero.
        length: positions per epoch; defaults to the sum of the datasets' lengths.
        seed: base seed of the mixing (a non-negative integer).
    """

    def __init__(
        self, datasets: Sequence[Dataset], weights: Sequence[float], length: int | None = None, seed: int = 0
    ) -> None:
        if len(datasets) == 0:
            raise ValueError("MixedDataset needs at least one dataset")
        if len(weights) != len(datasets):
            raise ValueError(f"MixedDataset got {len(datasets)} datasets but {len(weights)} weights")
        weights_array = np.asarray(weights, dtype=np.float64)
        if not np.all(np.isfinite(weights_array)) or np.any(weights_array < 0) or weights_array.sum() <= 0:
            raise ValueError(f"weights must be finite, non-negative and not all zero, got {list(weights)}")
        for position, (dataset, weight) in enumerate(zip(datasets, weights_array)):
            if weight > 0 and len(dataset) == 0:  # type: ignore[arg-type]
                raise ValueError(f"dataset #{position} has weight {weight} but no items")
        if length is not None and length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.datasets = list(datasets)
        self.probabilities = weights_array / weights_array.sum()
        self.length = int(length) if length is not None else sum(len(d) for d in datasets)  # type: ignore[arg-type]
        self.seed = seed
        self.epoch = 0
        self._plan: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # epoch, dataset, inner, repeat

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its mixing plan), and forward it to the datasets."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def _build_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every position of this epoch: dataset, inner index and repeat number, each ``[length]``."""
        rng = np.random.default_rng(derive_seed(self.seed, self.epoch, 0, STREAM_MIXING))
        choice = rng.choice(len(self.datasets), size=self.length, p=self.probabilities)  # [length]
        inner = np.zeros(self.length, dtype=np.int64)  # [length]
        repeat = np.zeros(self.length, dtype=np.int64)  # [length]
        for position, dataset in enumerate(self.datasets):
            where = np.flatnonzero(choice == position)
            if where.size == 0:
                continue
            size = len(dataset)  # type: ignore[arg-type]
            permutation = rng.permutation(size)
            draws = np.arange(where.size)
            inner[where] = permutation[draws % size]
            repeat[where] = draws // size
        return choice.astype(np.int64), inner, repeat

    def locate(self, index: int) -> tuple[int, int, int]:
        """``(dataset position, inner index, repeat)`` of ``index`` in the current epoch."""
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a mixed dataset of {self.length} items")
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, *self._build_plan())
        _, choice, inner, repeat = self._plan
        return int(choice[index]), int(inner[index]), int(repeat[index])

    def __getitem__(self, index: int) -> GroundingExample:
        position, inner, repeat = self.locate(index)
        dataset = self.datasets[position]
        if repeat and hasattr(dataset, "load"):
            return dataset.load(inner, repeat)
        return dataset[inner]
