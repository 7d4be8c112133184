"""MixedDataset: proportions follow the weights, the plan is deterministic per (seed, epoch)."""

from __future__ import annotations

from collections import Counter

import pytest

from glip.data import MixedDataset


class Numbers:
    """A stand-in dataset: item i of dataset `name` is (name, i, repeat)."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size, self.epoch = name, size, 0

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int):
        return self.load(index)

    def load(self, index: int, repeat: int = 0):
        assert 0 <= index < self.size
        return (self.name, index, repeat)


def test_proportions_follow_weights():
    mixed = MixedDataset([Numbers("a", 50), Numbers("b", 5000)], weights=[3.0, 1.0], length=4000, seed=1)
    counts = Counter(mixed[i][0] for i in range(len(mixed)))
    assert abs(counts["a"] / 4000 - 0.75) < 0.03
    # "a" (50 items) is drawn ~3000 times: every item about 60 times, with distinct repeat numbers.
    draws = Counter(item[1] for item in (mixed[i] for i in range(4000)) if item[0] == "a")
    assert set(draws) == set(range(50)) and max(draws.values()) - min(draws.values()) <= 1
    repeats = {(item[1], item[2]) for item in (mixed[i] for i in range(4000)) if item[0] == "a"}
    assert len(repeats) == counts["a"]  # no item read twice with the same randomness
    # "b" drawn fewer times than its size: no item repeats.
    b_items = [mixed[i][1] for i in range(4000) if mixed[i][0] == "b"]
    assert len(b_items) == len(set(b_items))


def test_plan_is_deterministic_and_changes_with_epoch():
    def plan(seed, epoch):
        mixed = MixedDataset([Numbers("a", 30), Numbers("b", 20)], weights=[1, 1], seed=seed)
        mixed.set_epoch(epoch)
        return [mixed[i] for i in range(len(mixed))]

    assert len(plan(0, 0)) == 50
    assert plan(0, 0) == plan(0, 0)
    assert plan(0, 0) != plan(0, 1)
    assert plan(0, 0) != plan(1, 0)


def test_set_epoch_is_forwarded_and_zero_weight():
    a, b = Numbers("a", 10), Numbers("b", 10)
    mixed = MixedDataset([a, b], weights=[1, 0])
    mixed.set_epoch(4)
    assert a.epoch == 4 and b.epoch == 4
    assert {mixed[i][0] for i in range(len(mixed))} == {"a"}


def test_invalid_arguments():
    with pytest.raises(ValueError, match="weights"):
        MixedDataset([Numbers("a", 3)], weights=[1, 2])
    with pytest.raises(ValueError, match="not all zero"):
        MixedDataset([Numbers("a", 3)], weights=[0])
    with pytest.raises(ValueError, match="no items"):
        MixedDataset([Numbers("a", 0), Numbers("b", 2)], weights=[1, 1])
    with pytest.raises(IndexError):
        MixedDataset([Numbers("a", 3)], weights=[1])[3]
