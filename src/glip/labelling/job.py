"""The labelling job: shards of image-text pairs in, ODVG shards of pseudo boxes out, never losing work.

Layout of the output folder ``DIR`` (the record format is in the README, "Self-training")::

    DIR/job.json              what the job is: its shards, settings and teacher (a rerun must match)
    DIR/<shard>.jsonl         the kept pairs of one input shard (ODVG JSON Lines), written atomically
    DIR/images/<shard>/...    images that lived inside a tar or a parquet file, extracted
    DIR/.shards/<shard>.json  the shard's counts and errors, written after the shard: it marks it done
    DIR/manifest.json         teacher, thresholds, per-shard and total counts (rebuilt at the end)
    DIR/errors.jsonl          every bad pair or shard: {"shard", "key", "reason"} (rebuilt at the end)

A shard is the unit of work and of idempotence: it is labelled from its start in one process and
committed by two renames (its records, then its counts), so a run killed at any point (SIGKILL of the
driver or of a worker) and rerun redoes only the shards without counts and ends with the same files
as an uninterrupted run (``seconds`` aside). Batches never cross shards, so the output does not
depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from glip.files import write_atomically
from glip.images import DEFAULT_MAX_MEGAPIXELS
from glip.labelling.sources import PairError, ParquetColumns, Shard, read_shard

JOB_FORMAT = "glip-labels/1"
COUNTS = ("pairs", "kept", "dropped", "phrases", "boxes", "errors")
Progress = Callable[[int, int], None]  # (pairs, boxes) labelled since the last call


@dataclass(frozen=True)
class LabelSettings:
    """Everything that decides the job's output (the device and the number of workers do not)."""

    weights: str | None = None  # the teacher's model file; None: the embedded default model
    min_score: float = 0.5  # a box is kept when its score is strictly above it (official: 0.5)
    min_boxes: int = 1  # a pair with fewer boxes is dropped (official CAPTION_MIN_BOX: 1)
    nms: float | None = None  # IoU of an extra per-phrase NMS (official: none)
    max_boxes_per_phrase: int | None = None  # cap per phrase (official: none)
    batch_size: int = 8  # pairs per engine pass (padding depends on the batch: part of the identity)
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    columns: ParquetColumns = field(default_factory=ParquetColumns)

    def teacher_options(self) -> dict:
        return {"min_score": self.min_score, "nms": self.nms, "max_boxes_per_phrase": self.max_boxes_per_phrase,
                "min_boxes": self.min_boxes, "max_pixels": int(self.max_megapixels * 1_000_000)}


@dataclass
class ShardStats:
    shard: str
    source: str
    pairs: int = 0
    kept: int = 0
    dropped: int = 0
    phrases: int = 0
    boxes: int = 0
    errors: int = 0
    seconds: float = 0.0


# ---------------------------------------------------------------- the output folder
def job_identity(shards: Sequence[Shard], settings: LabelSettings, fingerprint: str) -> dict:
    """What makes two runs the same job (a rerun resumes it)."""
    return {"format": JOB_FORMAT, "teacher": fingerprint, "settings": dataclasses.asdict(settings),
            "shards": [{"name": s.name, "path": str(s.path.resolve()), "kind": s.kind} for s in shards]}


def _stats_path(out: Path, name: str) -> Path:
    return out / ".shards" / f"{name}.json"


def _remove_outputs(out: Path, identity: dict) -> None:
    """Remove what the job ``identity`` wrote into ``out``."""
    for shard in identity.get("shards", []):
        name = str(shard.get("name"))
        (out / f"{name}.jsonl").unlink(missing_ok=True)
        _stats_path(out, name).unlink(missing_ok=True)
        shutil.rmtree(out / "images" / name, ignore_errors=True)
    for leftover in ("manifest.json", "errors.jsonl", "job.json"):
        (out / leftover).unlink(missing_ok=True)


def _remove_temporaries(out: Path) -> None:
    """Temporary files of writes a kill interrupted (``.NAME.XXXX.tmp``, `glip.files.write_atomically`)."""
    for folder in [out, out / ".shards", *sorted((out / "images").glob("*"))]:
        if folder.is_dir():
            for temporary in folder.glob(".*.tmp"):
                temporary.unlink(missing_ok=True)


def _same_job(previous: dict, identity: dict) -> bool:
    """The same job: only the spelling of the weights' path may differ (the teacher's fingerprint decides)."""
    def comparable(job: dict) -> dict:
        return {**job, "settings": {k: v for k, v in job.get("settings", {}).items() if k != "weights"}}
    return comparable(previous) == comparable(identity)


def open_output(out: Path, identity: dict, overwrite: bool = False) -> list[str]:
    """Make ``out`` ready for the job; returns the names of the shards already done (resume).

    Raises:
        FileExistsError: ``out`` holds another run's output (or other files) and not ``overwrite``.
        ValueError: an output file would replace an input shard.
    """
    names = [shard["name"] for shard in identity["shards"]]
    inputs = {shard["path"] for shard in identity["shards"]}
    for name in names:
        if str((out / f"{name}.jsonl").resolve()) in inputs:
            raise ValueError(f"the output {out / (name + '.jsonl')} would replace an input shard: choose another --out")
    job_file = out / "job.json"
    previous = json.loads(job_file.read_text()) if job_file.is_file() else None
    resume = previous is not None and not overwrite and _same_job(previous, identity)
    if previous is not None and not resume:
        if not overwrite:
            raise FileExistsError(f"{out} holds the output of another labelling run (other inputs, settings or "
                                  "teacher): pass --overwrite to replace it, or choose another --out")
        _remove_outputs(out, previous)
    elif previous is None and out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty and holds no labelling run: pass --overwrite to write into it, "
                              "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(out)
    if not resume:
        write_atomically(job_file, lambda path: path.write_text(json.dumps(identity, indent=2) + "\n"))
    return [name for name in names if _stats_path(out, name).is_file()]


# ---------------------------------------------------------------- one shard
def image_file_name(shard: str, key: str, extension: str) -> str:
    """Where an extracted image goes, relative to the output folder: ``images/<shard>/<key>.<ext>``.

    A key that is not a plain file name (``dir/000012``, spaces, a leading dot) is made one, with a
    hash of the key so that two keys never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).lstrip(".")
    if safe != key or not safe:
        safe = f"{safe or 'key'}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return f"images/{shard}/{safe}.{extension}"


def _record(out: Path, result) -> dict:
    """The ODVG record of a kept pair, its image extracted when it has no file of its own."""
    pair = result.pair
    if isinstance(pair.image, Path):
        filename = str(pair.image)
    else:
        filename = image_file_name(pair.shard, pair.key, result.image_extension or "img")
        write_atomically(out / filename, lambda path: path.write_bytes(pair.image))
    return {"filename": filename, "height": result.height, "width": result.width, "key": pair.key,
            "shard": pair.shard, "grounding": {"caption": pair.caption, "regions": result.regions}}


def label_shard(teacher, shard: Shard, out: Path, settings: LabelSettings,
                progress: Progress | None = None) -> ShardStats:
    """Label one shard from its start and commit it (records, then counts and errors)."""
    started = time.perf_counter()
    stats = ShardStats(shard.name, str(shard.path))
    records: list[dict] = []
    errors: list[tuple[int, dict]] = []  # (position in the shard, error): reported in input order

    def run(batch: list, positions: list[int]) -> None:
        boxes_before = stats.boxes
        for position, result in zip(positions, teacher.label(batch)):
            if result.status == "error":
                errors.append((position, {"shard": shard.name, "key": result.pair.key, "reason": result.error}))
                continue
            stats.phrases += result.phrases
            if result.status == "dropped":
                stats.dropped += 1
                continue
            stats.kept += 1
            stats.boxes += len(result.regions)
            records.append(_record(out, result))
        if progress is not None:
            progress(len(batch), stats.boxes - boxes_before)

    batch: list = []
    positions: list[int] = []
    for position, item in enumerate(read_shard(shard, settings.columns)):
        if isinstance(item, PairError):
            errors.append((position, {"shard": item.shard, "key": item.key, "reason": item.reason}))
            stats.pairs += item.key is not None
            continue
        stats.pairs += 1
        batch.append(item)
        positions.append(position)
        if len(batch) == settings.batch_size:
            run(batch, positions)
            batch, positions = [], []
    if batch:
        run(batch, positions)
    errors = [error for _, error in sorted(errors, key=lambda item: item[0])]
    stats.errors = len(errors)
    stats.seconds = round(time.perf_counter() - started, 3)
    write_atomically(out / f"{shard.name}.jsonl",
                     lambda path: path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                                  encoding="utf-8"))
    write_atomically(_stats_path(out, shard.name),
                     lambda path: path.write_text(json.dumps({"stats": dataclasses.asdict(stats), "errors": errors},
                                                             ensure_ascii=False, indent=1) + "\n", encoding="utf-8"))
    return stats


# ---------------------------------------------------------------- the summary
def write_summary(out: Path, identity: dict) -> dict:
    """Rebuild ``manifest.json`` and ``errors.jsonl`` from the per-shard files (all shards done)."""
    per_shard: dict[str, dict] = {}
    errors: list[dict] = []
    for shard in identity["shards"]:
        done = json.loads(_stats_path(out, shard["name"]).read_text(encoding="utf-8"))
        stats = done["stats"]
        per_shard[shard["name"]] = {k: v for k, v in stats.items() if k != "shard"}
        errors.extend(done["errors"])
    totals = {name: sum(s[name] for s in per_shard.values()) for name in COUNTS}
    totals["seconds"] = round(sum(s["seconds"] for s in per_shard.values()), 3)
    settings = {k: v for k, v in identity["settings"].items() if k != "weights"}
    manifest = {"format": JOB_FORMAT,
                "teacher": {"fingerprint": identity["teacher"], "weights": identity["settings"]["weights"]},
                "settings": settings, "shards": per_shard, "totals": totals}
    write_atomically(out / "errors.jsonl", lambda path: path.write_text(
        "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors), encoding="utf-8"))
    write_atomically(out / "manifest.json", lambda path: path.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest


def pending_shards(shards: Sequence[Shard], done: Sequence[str]) -> list[Shard]:
    finished = set(done)
    return [shard for shard in shards if shard.name not in finished]


def worker_threads(workers: int) -> int | None:
    """Torch threads per worker process: the cores shared out, unless OMP_NUM_THREADS says otherwise."""
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


# ---------------------------------------------------------------- the whole job
ENGINES = ("local", "ray")


def run_job(inputs: Sequence[str | Path], out: str | Path, settings: LabelSettings, workers: int = 1,
            overwrite: bool = False, device: str | None = None, engine: str = "local",
            progress: Progress | None = None, ray_address: str | None = None) -> dict:
    """Label every shard of ``inputs`` into ``out`` (resuming a run of the same job); returns the manifest.

    The shards are listed and the teacher loaded before anything is written: a missing input or a
    teacher that does not load is an error at once.
    """
    from glip.labelling.sources import list_shards
    from glip.labelling.teacher import Teacher

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use {' or '.join(ENGINES)}")
    out = Path(out)
    shards = list_shards(inputs)
    teacher = Teacher.from_weights(settings.weights, device, **settings.teacher_options())
    identity = job_identity(shards, settings, teacher.fingerprint)
    todo = pending_shards(shards, open_output(out, identity, overwrite))
    if engine == "ray":
        from glip.labelling.ray_engine import run_ray

        del teacher  # each actor loads its own
        run_ray(todo, out, settings, workers, device, ray_address, progress)
    else:
        from glip.labelling.local import run_local

        run_local(todo, out, settings, teacher, workers, device, progress)
    return write_summary(out, identity)
