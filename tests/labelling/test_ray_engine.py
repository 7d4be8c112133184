"""The Ray engine writes what the local engine writes: a local Ray instance on the CPU, two teacher
actors, the same shards labelled by both engines and compared file by file."""

from __future__ import annotations

import pytest

from labelling_helpers import clean_tar, read_outputs

ray = pytest.importorskip("ray", reason='the Ray engine needs the extra: pip install -e ".[ray]"')


def test_ray_and_local_engines_write_the_same_files(tiny_checkpoint, tmp_path, monkeypatch):
    import torch

    from glip.labelling.job import LabelSettings, run_job

    # byte-identical files need the same float arithmetic: one torch thread in every worker (the Ray
    # actors inherit OMP_NUM_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(3):
        clean_tar(inputs / f"{index:05d}.tar", count=3, start=3 * index)
    settings = LabelSettings(weights=str(tiny_checkpoint), min_score=0.3, batch_size=2)
    try:
        local = run_job([inputs], tmp_path / "local", settings, workers=1, device="cpu")
    finally:
        torch.set_num_threads(threads)
    seen = []
    on_ray = run_job([inputs], tmp_path / "ray", settings, workers=2, device="cpu", engine="ray",
                     progress=lambda pairs, boxes: seen.append(pairs))
    assert local["totals"]["kept"] > 0 and local["totals"]["boxes"] > 0
    assert read_outputs(tmp_path / "ray") == read_outputs(tmp_path / "local")
    assert on_ray["totals"] == {**local["totals"], "seconds": on_ray["totals"]["seconds"]}
    assert sum(seen) == 9  # every pair reported once, shard by shard
    assert not ray.is_initialized()  # the local instance it started is shut down
