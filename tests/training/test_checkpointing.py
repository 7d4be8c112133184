"""Atomic training checkpoints, retention, latest resolution, RNG states; the resumable sampler."""

from __future__ import annotations

import random

import numpy as np
import torch

from glip.training import checkpointing
from glip.training.distributed import ResumableShardedSampler


def test_save_keeps_the_last_k_and_ignores_partial_files(tmp_path) -> None:
    (tmp_path / "step_00000009.pt.tmp").write_bytes(b"half a file")  # left by a killed run
    for step in (1, 2, 3, 4):
        checkpointing.save_checkpoint(tmp_path, step, {"step": step, "weights": torch.full((2,), float(step))},
                                      keep_last=2)
    assert [s for s, _ in checkpointing.list_checkpoints(tmp_path)] == [3, 4]
    assert not list(tmp_path.glob("*.tmp"))
    latest = checkpointing.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000004.pt"
    assert checkpointing.load_checkpoint(latest)["weights"].tolist() == [4.0, 4.0]
    assert checkpointing.latest_checkpoint(tmp_path / "nothing") is None


def test_rng_state_round_trip() -> None:
    state = checkpointing.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.random(), np.random.rand(), torch.rand(())  # move on
    checkpointing.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_rng_state_survives_a_weights_only_load(tmp_path) -> None:
    path = checkpointing.atomic_save({"rng": checkpointing.rng_state()}, tmp_path / "x.pt")
    expected = float(torch.rand(()))
    torch.rand(())
    checkpointing.set_rng_state(checkpointing.load_checkpoint(path)["rng"])
    assert float(torch.rand(())) == expected


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
