"""The local engine: shards labelled by worker processes on this machine, each with its own model.

One worker labels in the calling process (the teacher already loaded); more start as spawned
processes that each load the teacher and take the next pending shard when they finish one. A
worker that dies (killed, out of memory) stops the run with an error; the shards finished so far
are kept and a rerun of the same command resumes from them. Workers end when the driver dies.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from glip.labelling.job import LabelSettings, Progress, label_shard, worker_threads
from glip.labelling.sources import Shard

_teacher = None  # the worker process's teacher, loaded once by `_start_worker`
_updates = None  # the queue of (pairs, boxes) progress updates to the driver


def _exit_with_parent(parent: int) -> None:
    """End this worker when the driver is gone (killed): its shard is redone by the next run."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _start_worker(settings: LabelSettings, device: str | None, threads: int | None, updates) -> None:
    global _teacher, _updates
    import torch

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()

    from glip.labelling.teacher import Teacher

    if threads is not None:
        torch.set_num_threads(threads)
    _teacher = Teacher.from_weights(settings.weights, device, **settings.teacher_options())
    _updates = updates


def _label_in_worker(shard: Shard, out: Path, settings: LabelSettings):
    return label_shard(_teacher, shard, out, settings, lambda pairs, boxes: _updates.put((pairs, boxes)))


def _drain(updates, progress: Progress | None) -> None:
    while True:
        try:
            pairs, boxes = updates.get_nowait()
        except queue_module.Empty:
            return
        if progress is not None:
            progress(pairs, boxes)


def run_local(shards: Sequence[Shard], out: Path, settings: LabelSettings, teacher, workers: int = 1,
              device: str | None = None, progress: Progress | None = None) -> None:
    """Label ``shards`` into ``out`` with ``workers`` processes (1: in this process, with ``teacher``)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not shards:
        return
    if workers == 1 or len(shards) == 1:
        for shard in shards:
            label_shard(teacher, shard, out, settings, progress)
        return
    context = multiprocessing.get_context("spawn")
    updates = context.Queue()
    count = min(workers, len(shards))
    with ProcessPoolExecutor(count, mp_context=context, initializer=_start_worker,
                             initargs=(settings, device, worker_threads(count), updates)) as pool:
        running = {pool.submit(_label_in_worker, shard, out, settings) for shard in shards}
        try:
            while running:
                finished, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(updates, progress)
                for future in finished:
                    future.result()
        except BrokenProcessPool:
            raise RuntimeError("a labelling worker died (killed or out of memory): the finished shards are kept; "
                               "rerun the same command to resume") from None
        finally:
            for future in running:
                future.cancel()
    _drain(updates, progress)
