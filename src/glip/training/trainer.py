"""The GLIP trainer: one loop for one CPU, one GPU or many processes under ``torchrun``.

A step takes ``grad_accumulation`` micro-batches, sums the weighted GLIPLoss terms, clips the
global gradient norm, steps AdamW and the warm-up/decay schedule, and updates the EMA. Training
checkpoints are written atomically every ``checkpoint_every`` steps and at the end; a resumed run
restores model, optimizer, schedule, EMA, grad scaler, RNG states and the data position, so that
it continues as if it had never stopped. The final model is exported in our safetensors format.

Example:
    >>> from glip.training.train_config import load_train_config
    >>> from glip.training.trainer import train
    >>> model_path = train(load_train_config("tiny.yaml", ["train.max_steps=100"]))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from glip.checkpoint import (load_glip, load_official, load_shared_state, load_state_strict, save_glip,
                             shorten_names)
from glip.config import GLIPConfig, get_config
from glip.data import (CocoDetectionDataset, DataError, GroundingCollator, GroundingJsonlDataset,
                       MdetrCocoDataset, MixedDataset, TrainingBatch, build_train_transforms)
from glip.modeling.glip import GLIP, GLIPOutput
from glip.training import checkpointing
from glip.training.distributed import (DistributedContext, ResumableShardedSampler, all_gather_objects,
                                       any_process, average_across_processes, barrier, cleanup_distributed,
                                       init_distributed, resolve_device, wrap_ddp)
from glip.training.ema import ModelEMA
from glip.training.loss import GLIPLoss, LossConfig
from glip.training.optim import build_optimizer, build_scheduler, freeze_parameters
from glip.training.train_config import ModelSection, TrainConfig

logger = logging.getLogger(__name__)

LOSS_TERMS = ("token", "box", "centerness")
FINAL_MODEL_NAME = "model.safetensors"


class NonFiniteLossError(RuntimeError):
    """The loss (or, without a grad scaler, the gradient) became NaN or infinite."""


# ---------------------------------------------------------------------------------- building
def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_model_config(section: ModelSection) -> GLIPConfig:
    """A preset or a config JSON file, with ``section.overrides`` merged in."""
    path = Path(section.config)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"model.config: {path} does not exist")
        data = json.loads(path.read_text())
    else:
        data = get_config(section.config).to_dict()
    return GLIPConfig.from_dict(_merge(data, section.overrides))


def build_model(section: ModelSection) -> GLIP:
    """The model of ``section``: built from its config, then loaded with ``section.weights`` if set
    (our .safetensors or an official .pth; the architecture must match)."""
    config = build_model_config(section)
    model = GLIP(config)
    if section.weights:
        path = Path(section.weights)
        loaded = load_glip(path, config) if path.suffix == ".safetensors" else load_official(path, config)
        load_state_strict(model, loaded.state_dict())
        logger.info("initial weights from %s", path)
    if section.init_from:
        shared = load_shared_state(model, load_glip(section.init_from).state_dict())
        logger.info("initial weights from %s: %d tensors copied; %d of this model kept their initialisation "
                    "(%s); %d of the checkpoint unused (%s)", section.init_from, len(shared.copied),
                    len(shared.kept), shorten_names(shared.kept, 6), len(shared.unused),
                    shorten_names(shared.unused, 6))
    return model


class SkipUnreadable(Dataset):
    """A dataset whose items that fail to load (an image that cannot be decoded) are replaced by
    the next readable item, with a warning: ``on_error="skip"`` for faults found only at training
    time. The replacement depends only on the index, so runs stay reproducible and resumable."""

    def __init__(self, dataset: Dataset, max_tries: int = 16) -> None:
        self.dataset = dataset
        self.max_tries = max_tries

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def load(self, index: int, repeat: int = 0) -> Any:
        for attempt in range(self.max_tries):
            candidate = (index + attempt) % len(self.dataset)
            try:
                return self.dataset.load(candidate, repeat)
            except DataError as error:
                logger.warning("skipping an unreadable item: %s", error)
        raise DataError(f"{self.max_tries} items in a row from index {index} cannot be read; check the data")

    def __getitem__(self, index: int) -> Any:
        return self.load(index)


def build_dataset(config: TrainConfig, model_config: GLIPConfig) -> Dataset:
    """The training data of ``config.data`` (several datasets are mixed by their weights)."""
    if not config.data.datasets:
        raise ValueError("data.datasets is empty: add at least one dataset (type, annotations, images)")
    transform = build_train_transforms(config.input.min_sizes, config.input.max_size, config.input.flip_prob,
                                       config=model_config.input)
    seed = config.train.seed
    datasets = []
    for entry in config.data.datasets:
        if entry.type == "coco":
            dataset = CocoDetectionDataset(entry.annotations, entry.images, entry.max_prompt_categories,
                                           max_prompt_tokens=model_config.text.max_length, on_error=entry.on_error,
                                           seed=seed, transform=transform)
        elif entry.type == "odvg":
            dataset = GroundingJsonlDataset(entry.annotations, entry.images, on_error=entry.on_error, seed=seed,
                                            transform=transform)
        else:
            dataset = MdetrCocoDataset(entry.annotations, entry.images, on_error=entry.on_error, seed=seed,
                                       transform=transform)
        datasets.append(SkipUnreadable(dataset) if entry.on_error == "skip" else dataset)
    if len(datasets) == 1:
        return datasets[0]
    return MixedDataset(datasets, [entry.weight for entry in config.data.datasets], seed=seed)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full precision)."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None  # CPU bf16 autocast is slower than float32 on most CPUs without AMX
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs a CUDA device; use bf16 (or off) on the CPU")
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bf16; use train.amp=fp16")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def _to_float32(output: GLIPOutput) -> GLIPOutput:
    """Head outputs back to float32 so that the loss is computed at full precision."""
    head = output.head
    changes = {f.name: [t.float() for t in getattr(head, f.name)] if isinstance(getattr(head, f.name), list)
               else getattr(head, f.name).float() for f in dataclasses.fields(head)}
    return dataclasses.replace(output, head=dataclasses.replace(head, **changes))


# ---------------------------------------------------------------------------------- metrics
class MetricsLog:
    """Metric records to ``metrics.jsonl``, ``metrics.csv`` and (if installed) TensorBoard.

    On resume, records past the resumed step (logged after the last checkpoint of a killed run)
    are dropped, so that the files tell one consistent history.
    """

    COLUMNS = ("step", "epoch", "loss", *LOSS_TERMS, "lr", "language_lr", "grad_norm", "images_per_s", "elapsed_s")
    _warned = False

    def __init__(self, directory: Path, tensorboard: bool, resume_step: int | None) -> None:
        self.jsonl = directory / "metrics.jsonl"
        self.csv = directory / "metrics.csv"
        rows = self._kept_rows(resume_step)
        with self.jsonl.open("w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        with self.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if not MetricsLog._warned:
                    logger.warning("tensorboard is not installed: metrics go to metrics.jsonl/.csv only "
                                   "(pip install tensorboard)")
                    MetricsLog._warned = True
            else:
                self.writer = SummaryWriter(str(directory / "tensorboard"), purge_step=resume_step)

    def _kept_rows(self, resume_step: int | None) -> list[dict[str, Any]]:
        if resume_step is None or not self.jsonl.is_file():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
            if row.get("step", 0) <= resume_step:
                rows.append(row)
        return rows

    def log(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        with self.csv.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.COLUMNS, extrasaction="ignore").writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------------------------- the loop
class Trainer:
    """Builds everything from a `TrainConfig`; :meth:`fit` runs (or resumes) training and returns
    the path of the exported final model (on every process).

    Args:
        config: the training configuration.
        context: this process's place in a distributed run (default: one process on
            ``config.train.device``).
        dataset: use this dataset instead of building ``config.data``.
        model: train this model instead of building ``config.model`` (e.g. with some parameters
            already frozen, or a prompt embedding enabled); a resume must pass an identical one.
    """

    def __init__(self, config: TrainConfig, context: DistributedContext | None = None,
                 dataset: Dataset | None = None, model: GLIP | None = None) -> None:
        self.config = config
        self.context = context or DistributedContext(device=resolve_device(config.train.device))
        self.device = self.context.device
        self.output_dir = Path(config.output.dir)
        train = config.train
        _seed_everything(train.seed)
        self.model = (model if model is not None else build_model(config.model)).to(self.device)
        if train.freeze:
            frozen = freeze_parameters(self.model, train.freeze)
            logger.info("froze %d parameters (%s)", frozen, ", ".join(train.freeze))
        self.optimizer = build_optimizer(self.model, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.optim, train.max_steps)
        self.ema = ModelEMA(self.model, train.ema_decay) if train.ema_decay else None
        self.amp_dtype = resolve_amp(train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.loss_fn = GLIPLoss(LossConfig(config.loss.focal_alpha, config.loss.focal_gamma, config.loss.atss_top_k))
        self.loss_weights = config.loss_weights()
        model_config = self.model.config
        self.dataset = dataset if dataset is not None else build_dataset(config, model_config)
        self.collator = GroundingCollator(max_length=model_config.text.max_length,
                                          size_divisibility=model_config.input.size_divisibility)
        self.sampler = ResumableShardedSampler(len(self.dataset), seed=train.seed, rank=self.context.rank,
                                               world_size=self.context.world_size)
        global_batch = train.batch_size * self.context.world_size
        if len(self.dataset) < global_batch:
            raise ValueError(f"the training data has {len(self.dataset)} samples, fewer than one global batch "
                             f"({train.batch_size} per process x {self.context.world_size} processes)")
        self.step = 0
        self.epoch = 0
        self.position = 0  # samples of the current epoch consumed by all processes together
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.ddp_model: torch.nn.Module = self.model
        # Training-time randomness (dropout) differs between processes; model init did not.
        torch.manual_seed(train.seed + self.context.rank)

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "format": "glip-train", "version": 1,
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "world_size": self.context.world_size, "batch_size": self.config.train.batch_size,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "config": self.config.to_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current state (main process; all processes must call this)."""
        rng_states = all_gather_objects(checkpointing.rng_state())
        path = None
        if self.context.is_main:
            payload = self.state()
            payload["rng"] = rng_states
            path = checkpointing.save_checkpoint(self.output_dir / "checkpoints", self.step, payload,
                                                 self.config.output.keep_last)
        barrier()
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything from a training checkpoint (RNG included: call last before the loop)."""
        state = checkpointing.load_checkpoint(path)
        if state.get("format") != "glip-train":
            raise ValueError(f"{path} is not a glip training checkpoint")
        _warn_config_changes(state.get("config", {}), self.config.to_dict())
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if state["ema"] is None:
                logger.warning("%s has no EMA: the EMA restarts from the current weights", path)
                self.ema = ModelEMA(self.model, self.ema.decay)
            else:
                self.ema.load_state_dict(state["ema"])
                self.ema.decay = self.config.train.ema_decay  # the config may change it on resume
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.position = int(state["step"]), int(state["epoch"]), int(state["position"])
        rng_states = state["rng"]
        if len(rng_states) != self.context.world_size:
            logger.warning("%s was written by %d processes, now %d: random streams restart from the main one",
                           path, len(rng_states), self.context.world_size)
        checkpointing.set_rng_state(rng_states[self.context.rank if len(rng_states) == self.context.world_size else 0])
        logger.info("resumed from %s (step %d, epoch %d, position %d)", path, self.step, self.epoch, self.position)

    def _start(self, resume: bool) -> int | None:
        """Resume or check that a fresh run would overwrite nothing. Returns the resumed step."""
        latest = checkpointing.latest_checkpoint(self.output_dir / "checkpoints")
        if latest is not None and not resume:
            raise FileExistsError(f"{self.output_dir} already holds training checkpoints (latest {latest.name}): "
                                  "resume with --resume (train.resume=true) or choose another output.dir")
        if resume and latest is None:
            logger.warning("nothing to resume in %s: starting a new run", self.output_dir / "checkpoints")
        if self.context.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "config.yaml").write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        barrier()
        if resume and latest is not None:
            self.load_checkpoint(latest)
            return self.step
        return None

    # ------------------------------------------------------------ data
    def batches(self) -> Iterator[tuple[TrainingBatch, int, int]]:
        """Endless ``(batch, epoch, position after it)`` from the saved data position on."""
        train = self.config.train
        epoch, position = self.epoch, self.position
        while True:
            self.sampler.set_epoch(epoch, position)
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            # The loader's own generator (not the global RNG) seeds its workers, so building a
            # loader mid-epoch on resume leaves the global random stream as it was.
            generator = torch.Generator().manual_seed(train.seed * 1_000_003 + epoch)
            loader = DataLoader(self.dataset, batch_size=train.batch_size, sampler=self.sampler, drop_last=True,
                                collate_fn=self.collator, num_workers=train.num_workers, generator=generator,
                                pin_memory=self.device.type == "cuda")
            for batch in loader:
                position += train.batch_size * self.context.world_size
                yield batch, epoch, position
            epoch, position = epoch + 1, 0

    # ------------------------------------------------------------ one step
    def loss_terms(self, batch: TrainingBatch) -> dict[str, torch.Tensor]:
        """Forward one micro-batch (under autocast if enabled) and return the unweighted terms."""
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else nullcontext())
        with autocast:
            output = self.ddp_model(batch.images, batch.input_ids, batch.attention_mask)
        if self.amp_dtype is not None:
            output = _to_float32(output)
        return self.loss_fn(output, batch.targets, batch.attention_mask)

    def train_step(self, micro_batches: list[TrainingBatch]) -> tuple[dict[str, float], bool]:
        """One optimizer step over the micro-batches. Returns the values to log and whether the
        step was taken: False (and nothing changed) when the loss or the gradient is not finite
        on any process."""
        self.ddp_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums = dict.fromkeys(LOSS_TERMS, 0.0)
        finite = True
        for index, batch in enumerate(micro_batches):
            batch = batch.to(self.device, non_blocking=True)
            last = index == len(micro_batches) - 1
            sync = nullcontext() if last or self.ddp_model is self.model else self.ddp_model.no_sync()
            with sync:
                terms = self.loss_terms(batch)
                total = sum(self.loss_weights[k] * terms[k] for k in LOSS_TERMS) / len(micro_batches)
                finite &= bool(torch.isfinite(total))
                (self.scaler.scale(total) if self.scaler else total).backward()
            for key in LOSS_TERMS:
                sums[key] += float(terms[key].detach()) / len(micro_batches)
        sums["loss"] = sum(self.loss_weights[k] * sums[k] for k in LOSS_TERMS)
        if any_process(not finite, self.device):
            return sums, False
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.config.optim.grad_clip or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, max_norm))
        sums["grad_norm"] = grad_norm
        if self.scaler is None and not math.isfinite(grad_norm):
            return sums, False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return sums, True

    def _stop_non_finite(self, micro_batches: list[TrainingBatch], values: dict[str, float]) -> None:
        """Save the last good state, then raise with the failing step and its images."""
        path = self.save_checkpoint()
        sources = [s for batch in micro_batches for s in batch.describe().split("; ")]
        sources = [s for part in all_gather_objects(sources) for s in part]
        saved = f"; the last good state (step {self.step}) is saved as {path}" if path else ""
        terms = ", ".join(f"{key} {value:.4g}" for key, value in values.items())
        raise NonFiniteLossError(f"non-finite loss or gradient at step {self.step + 1} ({terms}); "
                                 f"batch images: {', '.join(sources)}{saved}")

    # ------------------------------------------------------------ fit
    def fit(self, resume: bool | None = None, export: bool = True) -> Path | None:
        """Train to ``train.max_steps`` (resuming if asked) and export the final model (``export=False``:
        leave the trained weights in ``self.model`` / ``self.ema`` only and return None)."""
        config, train = self.config, self.config.train
        resumed_step = self._start(train.resume if resume is None else resume)
        self.ddp_model = wrap_ddp(self.model, self.context, train.find_unused_parameters)
        metrics = MetricsLog(self.output_dir, config.output.tensorboard, resumed_step) if self.context.is_main else None
        images_per_step = train.batch_size * train.grad_accumulation * self.context.world_size
        bar = tqdm(total=train.max_steps, initial=self.step, unit="step", dynamic_ncols=True, desc="train",
                   disable=not (self.context.is_main and config.output.progress))
        stream = self.batches()
        window = {"values": dict.fromkeys((*LOSS_TERMS, "loss", "grad_norm"), 0.0), "steps": 0,
                  "start": time.perf_counter()}
        started = time.perf_counter()
        try:
            while self.step < train.max_steps:
                step_start = time.perf_counter()
                pulled = [next(stream) for _ in range(train.grad_accumulation)]
                micro_batches = [batch for batch, _, _ in pulled]
                values, taken = self.train_step(micro_batches)
                if not taken:
                    self._stop_non_finite(micro_batches, values)
                self.step += 1
                _, self.epoch, self.position = pulled[-1]
                for key in window["values"]:
                    window["values"][key] += values[key]
                window["steps"] += 1
                speed = images_per_step / max(time.perf_counter() - step_start, 1e-9)
                bar.update(1)
                bar.set_postfix({k: f"{values[k]:.3f}" for k in ("loss", *LOSS_TERMS)} | {"img/s": f"{speed:.1f}"},
                                refresh=False)
                if self.step % config.output.log_every == 0 or self.step == train.max_steps:
                    self._log(metrics, window, images_per_step, started)
                if self.step % config.output.checkpoint_every == 0 or self.step == train.max_steps:
                    self.save_checkpoint()
        finally:
            stream.close()
            bar.close()
            if metrics is not None:
                metrics.close()
        return self._export() if export else None

    def _log(self, metrics: MetricsLog | None, window: dict[str, Any], images_per_step: int, started: float) -> None:
        steps = window["steps"]
        averaged = average_across_processes({k: v / steps for k, v in window["values"].items()}, self.device)
        elapsed = time.perf_counter() - window["start"]
        lrs = {group.get("name", "main"): group["lr"] for group in self.optimizer.param_groups}
        row = {"step": self.step, "epoch": self.epoch, **averaged, "lr": lrs.get("main"),
               "language_lr": lrs.get("language"), "images_per_s": steps * images_per_step / max(elapsed, 1e-9),
               "elapsed_s": time.perf_counter() - started}
        if metrics is not None:
            metrics.log(row)
        logger.info("step %d: %s", self.step, ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                         if isinstance(v, float)))
        window["values"] = dict.fromkeys(window["values"], 0.0)
        window["steps"] = 0
        window["start"] = time.perf_counter()

    def _export(self) -> Path:
        """Write the final model (EMA weights when EMA is on) in our format; every process gets the path."""
        path = self.output_dir / FINAL_MODEL_NAME
        if self.context.is_main:
            model = self.ema.module if self.ema is not None else self.model
            save_glip(model, path, {"source": "glip train", "step": str(self.step),
                                    "weights": "ema" if self.ema is not None else "model"})
            logger.info("final model (%s weights) -> %s", "EMA" if self.ema is not None else "trained", path)
        barrier()
        return path


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _warn_config_changes(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> None:
    """Log the settings that differ from those the checkpoint was written with."""
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            _warn_config_changes(old, new, name + ".")
        elif old != new and name != "train.resume":
            logger.warning("resuming with %s = %r (the checkpoint was written with %r)", name, new, old)


def train(config: TrainConfig, resume: bool | None = None) -> Path:
    """Train as ``config`` says, on one process or under ``torchrun``; returns the final model path.

    Example:
        >>> path = train(load_train_config("tiny.yaml"))  # doctest: +SKIP
        >>> GLIPPredictor.from_pretrained(path).detect("a.jpg", classes=["circle"])  # doctest: +SKIP
    """
    context = init_distributed(config.train.device)
    try:
        return Trainer(config, context).fit(resume)
    finally:
        cleanup_distributed()


def export_training_checkpoint(checkpoint: str | Path, output: str | Path, use_ema: bool = True,
                               dtype: torch.dtype | None = None) -> Path:
    """Turn a training checkpoint (``step_N.pt``) into our model format (EMA weights when present
    and ``use_ema``), e.g. to use a model before its run has finished."""
    state = checkpointing.load_checkpoint(checkpoint)
    model = build_model(TrainConfig.from_dict(state["config"]).model)
    weights = state["ema"]["weights"] if use_ema and state.get("ema") else state["model"]
    load_state_strict(model, weights)
    return save_glip(model, output, {"source": f"training checkpoint {Path(checkpoint).name}",
                                     "step": str(state["step"])}, dtype=dtype)
