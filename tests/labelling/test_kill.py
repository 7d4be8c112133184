"""A labelling run killed with SIGKILL (the driver, or one worker process) and run again ends with the
same files as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from glip.labelling.job import LabelSettings, run_job
from labelling_helpers import clean_tar, read_outputs

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def _command(inputs: list[Path], out: Path, weights: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "glip.labelling.cli", *map(str, inputs), "--out", str(out), "--weights",
            str(weights), "--min-score", "0.5", "--batch-size", "1", "--workers", str(workers), "--no-progress"]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _is_worker(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"spawn_main" in command and b"resource_tracker" not in command


def _wait_for_first_shard(process: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 120
    while not list((out / ".shards").glob("*.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.01)


@pytest.fixture
def job(tiny_checkpoint, tmp_path, monkeypatch):
    """Four shards and the files of an uninterrupted run (in this process, one thread like the others)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    inputs = [clean_tar(tmp_path / f"{i}.tar", 4, start=4 * i) for i in range(4)]
    reference = tmp_path / "reference"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_job(inputs, reference, LabelSettings(weights=str(tiny_checkpoint), min_score=0.5, batch_size=1))
    finally:
        torch.set_num_threads(threads)
    return inputs, read_outputs(reference), dict(os.environ)


def test_sigkill_of_the_driver_then_rerun_gives_the_same_files(job, tiny_checkpoint, tmp_path):
    inputs, reference, env = job
    out = tmp_path / "out"
    process = subprocess.Popen(_command(inputs, out, tiny_checkpoint, 2), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_first_shard(process, out)
    workers = [pid for pid in _children(process.pid) if _is_worker(pid)]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "manifest.json").exists()  # killed before the end
    assert len(list((out / ".shards").glob("*.json"))) < len(inputs)
    deadline = time.monotonic() + 30
    while any(_is_worker(pid) for pid in workers):  # the workers end with their driver
        assert time.monotonic() < deadline, "a worker outlived its driver"
        time.sleep(0.1)
    subprocess.run(_command(inputs, out, tiny_checkpoint, 1), check=True, env=env, capture_output=True)
    assert read_outputs(out) == reference


def test_sigkill_of_a_worker_stops_the_run_and_a_rerun_finishes_it(job, tiny_checkpoint, tmp_path):
    inputs, reference, env = job
    out = tmp_path / "out"
    process = subprocess.Popen(_command(inputs, out, tiny_checkpoint, 2), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_first_shard(process, out)
    workers = [pid for pid in _children(process.pid) if _is_worker(pid)]
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "a labelling worker died" in err and "rerun" in err
    assert not (out / "manifest.json").exists()
    subprocess.run(_command(inputs, out, tiny_checkpoint, 2), check=True, env=env, capture_output=True)
    assert read_outputs(out) == reference
