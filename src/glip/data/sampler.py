"""The training sample order: a function of ``(seed, epoch)`` only, sharded over processes and able
to start from any position, so that a killed run resumes exactly (even with another world size).

Example:
    >>> sampler = ResumableShardedSampler(10, seed=3, rank=0, world_size=2)
    >>> sampler.set_epoch(0, start=4)  # 4 samples of epoch 0 already consumed by both processes
    >>> len(sampler)
    3
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

class ResumableShardedSampler(Sampler[int]):
    """The sample order of one epoch, a function of ``(seed, epoch)`` only, sharded by rank and able
    to start from a position.

    The global order is a permutation of the dataset (or the identity with ``shuffle=False``). The
    first ``start`` entries of it are skipped (already consumed, counted over all processes); the
    rest is dealt out round-robin: process ``r`` takes entries ``start + r``, ``start + r + W``, ...
    After each process has taken ``k`` samples, the processes together have consumed exactly the
    first ``start + k * W`` entries, so the position is one global number whatever the number of
    processes, and a run can resume with another world size. Every process gets the same count
    (the tail that does not divide evenly is dropped).
    """

    def __init__(self, dataset_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True) -> None:
        if dataset_size <= 0:
            raise ValueError("the training data is empty")
        self.dataset_size = dataset_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch, and the global position within it to start from."""
        if not 0 <= start <= self.dataset_size:
            raise ValueError(f"data position {start} is outside an epoch of {self.dataset_size} samples")
        self.epoch = epoch
        self.start = start

    def order(self) -> list[int]:
        """The global order of the current epoch (all processes)."""
        if not self.shuffle:
            return list(range(self.dataset_size))
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def __len__(self) -> int:
        return (self.dataset_size - self.start) // self.world_size

    def __iter__(self) -> Iterator[int]:
        remaining = self.order()[self.start:]
        count = len(self)
        return iter(remaining[self.rank::self.world_size][:count])
