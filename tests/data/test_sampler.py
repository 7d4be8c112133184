"""The resumable sharded sampler: an order that depends on (seed, epoch) only, shards that
interleave back into the single-process order, and a start from a global position."""

from __future__ import annotations

from glip.data.sampler import ResumableShardedSampler


def test_sampler_order_depends_on_seed_and_epoch_only() -> None:
    sampler = ResumableShardedSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert sorted(first) == list(range(10))
    again = ResumableShardedSampler(10, seed=3)
    again.set_epoch(2)
    assert list(again) == first
    again.set_epoch(3)
    assert list(again) != first


def test_sampler_shards_and_resumes_from_a_global_position() -> None:
    single = ResumableShardedSampler(11, seed=1)
    single.set_epoch(0)
    order = list(single)
    shards = []
    for rank in range(2):
        sampler = ResumableShardedSampler(11, seed=1, rank=rank, world_size=2)
        sampler.set_epoch(0, start=4)
        shards.append(list(sampler))
    assert [len(s) for s in shards] == [3, 3]  # 7 left, the odd one is dropped
    interleaved = [index for pair in zip(*shards) for index in pair]
    assert interleaved == order[4:10]


def test_sampler_refuses_an_empty_dataset_and_a_position_past_the_epoch() -> None:
    import pytest

    with pytest.raises(ValueError, match="the training data is empty"):
        ResumableShardedSampler(0)
    sampler = ResumableShardedSampler(5)
    with pytest.raises(ValueError, match="data position 6 is outside an epoch of 5 samples"):
        sampler.set_epoch(0, start=6)
    sampler.set_epoch(0, start=5)
    assert list(sampler) == []
