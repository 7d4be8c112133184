"""The Ray engine: the labelling job's shards spread over a pool of teacher actors by Ray Data.

``ray.data.from_items`` holds the pending shards (one row each); ``map_batches`` runs them through
an actor pool of `ShardLabeller` (one teacher model per actor, loaded once; one GPU per actor where
CUDA is available), each calling the same `glip.labelling.job.label_shard` as the local engine.
So the two engines write the same files: a shard is labelled from its start in one actor, in input
order, and committed by the same two atomic renames. A killed actor's shard is retried by Ray (or
redone by a rerun of the command, which skips the finished shards).

Every actor writes its shards into the job's output folder, so on a cluster of several machines
that folder must be on a file system they share (as for any distributed job's outputs).
``address`` joins an existing cluster (``ray start --head`` elsewhere); None starts a local one on
this machine. Ray is an optional extra: ``pip install "glip[ray]"``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from glip.labelling.job import LabelSettings, Progress, label_shard, worker_threads
from glip.labelling.sources import Shard

logger = logging.getLogger(__name__)

RAY_HINT = 'the Ray engine needs Ray: pip install "glip[ray]"'


class ShardLabeller:
    """A Ray Data actor: one teacher, loaded once, labelling whole shards (a batch of shard rows)."""

    def __init__(self, out: str, settings: LabelSettings, device: str | None, threads: int | None) -> None:
        import torch

        from glip.labelling.teacher import Teacher

        if threads is not None:
            torch.set_num_threads(threads)
        self.out = Path(out)
        self.settings = settings
        self.teacher = Teacher.from_weights(settings.weights, device, **settings.teacher_options())

    def __call__(self, batch: dict) -> dict:
        pairs, boxes = [], []
        for path, kind in zip(batch["path"], batch["kind"]):
            stats = label_shard(self.teacher, Shard(Path(str(path)), str(kind)), self.out, self.settings)
            pairs.append(stats.pairs)
            boxes.append(stats.boxes)
        return {"name": list(batch["name"]), "pairs": pairs, "boxes": boxes}


def run_ray(shards: Sequence[Shard], out: Path, settings: LabelSettings, workers: int = 1,
            device: str | None = None, address: str | None = None, progress: Progress | None = None) -> None:
    """Label ``shards`` into ``out`` on ``workers`` teacher actors of a Ray cluster."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(RAY_HINT) from None
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not shards:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        import torch

        gpus = 1 if torch.cuda.is_available() and (device is None or str(device).startswith("cuda")) else 0
        rows = [{"name": s.name, "path": str(s.path), "kind": s.kind} for s in shards]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        count = min(workers, len(rows))
        labelled = dataset.map_batches(
            ShardLabeller, batch_size=1, concurrency=count, num_gpus=gpus,
            fn_constructor_kwargs={"out": str(out), "settings": settings, "device": device,
                                   "threads": None if gpus else worker_threads(count)})
        for row in labelled.iter_rows():
            if progress is not None:
                progress(int(row["pairs"]), int(row["boxes"]))
    finally:
        if started_here:
            ray.shutdown()
