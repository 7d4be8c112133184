"""The GLIP trainer: one loop for one CPU, one GPU or many processes under ``torchrun``.

A step takes ``grad_accumulation`` micro-batches, sums the weighted GLIPLoss terms (and GLIPv2's
``inter_image``, ``mlm`` and ``mask`` terms when their weights are on), clips the global gradient norm,
steps AdamW and the warm-up/decay schedule, and updates the EMA. Training checkpoints are
written atomically every ``checkpoint_every`` steps and at the end; a resumed run restores model,
optimizer, schedule, EMA, grad scaler, RNG states and the data position, so that it continues as
if it had never stopped (frozen parameters that building the model restores are not stored, see
`glip.training.checkpointing`). The final model is exported in our safetensors format.

Example:
    >>> from glip.training.train_config import load_train_config
    >>> from glip.training.trainer import train
    >>> model_path = train(load_train_config("tiny.yaml", ["train.max_steps=100"]))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from glip.checkpoint import save_glip
from glip.config import GLIPConfig
from glip.data import GroundingCollator, TrainingBatch, build_train_transforms
from glip.data.sampler import ResumableShardedSampler
from glip.data.training_set import build_training_dataset
from glip.distributed import DistributedContext, init_distributed, resolve_device
from glip.modeling.glip import GLIP, GLIPOutput
from glip.tokenizer import load_tokenizer
from glip.training import checkpointing
from glip.training.ema import ModelEMA
from glip.training.inter_image_loss import InterImageLoss
from glip.training.loss import GLIPLoss, LossConfig
from glip.training.mask_loss import MaskLoss
from glip.training.metrics_log import MetricsLog
from glip.training.mlm import mask_tokens, mlm_loss, positive_token_mask
from glip.training.optim import LANGUAGE_PREFIX, build_optimizer, build_scheduler, freeze_parameters
from glip.training.starting_model import build_model
from glip.training.train_config import TrainConfig

logger = logging.getLogger(__name__)

FINAL_MODEL_NAME = "model.safetensors"


class NonFiniteLossError(RuntimeError):
    """The loss (or, without a grad scaler, the gradient) became NaN or infinite."""


# ---------------------------------------------------------------------------------- building
def build_dataset(config: TrainConfig, model_config: GLIPConfig) -> Dataset:
    """The training data of ``config.data``, read at ``config.input``'s sizes for ``model_config``."""
    transform = build_train_transforms(config.input.min_sizes, config.input.max_size, config.input.flip_prob,
                                       config=model_config.input)
    return build_training_dataset(config.data.datasets, transform, max_prompt_tokens=model_config.text.max_length,
                                  seed=config.train.seed)


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
            Its checkpoints store it whole.

    A trainer of another task subclasses it (`glip.captioning.trainer.CaptionTrainer`,
    `glip.training.vqa_trainer.VqaTrainer`) and overrides only what differs: the model built
    (`_build_model`), the data (``dataset`` and `_build_collator`), the named loss terms
    (`_build_losses`, `loss_terms`), what its checkpoints record (`config_dict`, `state`,
    `_check_checkpoint`) and the exported files (`_export`).
    """

    language_prefix = LANGUAGE_PREFIX  # the parameter names AdamW gives optim.language_lr

    def __init__(self, config: TrainConfig, context: DistributedContext | None = None,
                 dataset: Dataset | None = None, model: GLIP | None = None) -> None:
        self.config = config
        if context is None:
            try:
                context = DistributedContext(device=resolve_device(config.train.device))
            except ValueError as error:
                raise ValueError(f"train.device: {error}") from None
        self.context = context
        self.device = self.context.device
        self.output_dir = Path(config.output.dir)
        train = config.train
        _seed_everything(train.seed)
        self.model = self._build_model(model).to(self.device)
        self.optimizer = build_optimizer(self.model, config.optim, self.language_prefix)
        self.scheduler = build_scheduler(self.optimizer, config.optim, train.max_steps)
        self.ema = ModelEMA(self.model, train.ema_decay) if train.ema_decay else None
        self.amp_dtype = resolve_amp(train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.loss_weights = self._build_losses()
        self.terms = tuple(self.loss_weights)  # the named terms, in the order they are logged
        self.dataset = dataset if dataset is not None else build_dataset(config, self.model.config)
        self.collator = self._build_collator()
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

    # ------------------------------------------------------------ what a subclass changes
    def _build_model(self, model: GLIP | None) -> nn.Module:
        """The model to train (``model``, or ``config.model`` built), with ``train.freeze`` applied.
        Sets ``self.rebuilt``, the parameters that building the model again restores (checkpoints
        leave out those of them that are frozen; none for a model passed in), and ``self.sources``."""
        if model is None:
            start = build_model(self.config.model)
            model, self.rebuilt, self.sources = start.model, start.sourced, start.sources
        else:
            self.rebuilt, self.sources = frozenset(), ""
        if self.config.train.freeze:
            frozen = freeze_parameters(model, self.config.train.freeze)
            logger.info("froze %d parameters (%s)", frozen, ", ".join(self.config.train.freeze))
        return model

    def _build_losses(self) -> dict[str, float]:
        """Set up what `loss_terms` needs; returns the weight of each named term the loss sums."""
        config = self.config
        weights = config.loss_weights()
        self._check_pretraining_heads(weights)
        self.loss_fn = GLIPLoss(LossConfig(config.loss.focal_alpha, config.loss.focal_gamma, config.loss.atss_top_k,
                                           phrase_ce="phrase_ce" in weights,
                                           phrase_ce_candidates=config.loss.phrase_ce_candidates))
        self.inter_image_loss = self.mlm_vocabulary = self.mask_loss = None
        if "mask" in weights:
            self.mask_loss = MaskLoss(config.loss.mask_box_jitter)
        if "inter_image" in weights:
            self.inter_image_loss = InterImageLoss(config.loss.inter_image_max_positives, config.loss.atss_top_k)
        if "mlm" in weights:
            tokenizer = load_tokenizer()
            self.mlm_vocabulary = {"mask_token_id": tokenizer.mask_token_id, "special_ids": tokenizer.all_special_ids,
                                   "vocab_size": self.model.config.text.vocab_size}
        return weights

    def _build_collator(self) -> Callable[[list[Any]], Any]:
        """Samples of ``self.dataset`` -> one batch with ``to(device)`` and ``describe()``."""
        model_config = self.model.config
        return GroundingCollator(max_length=model_config.text.max_length,
                                 size_divisibility=model_config.input.size_divisibility)

    def config_dict(self) -> dict[str, Any]:
        """The run's configuration as its file reads: config.yaml and every checkpoint record it."""
        return self.config.to_dict()

    def _check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        """Raise if the checkpoint ``state`` (read from ``path``) cannot resume this run."""
        if state.get("format") != checkpointing.TRAINING_FORMAT:
            raise ValueError(f"{path} is not a glip training checkpoint")

    def _check_pretraining_heads(self, weights: dict[str, float]) -> None:
        """A pre-training term that is on needs its head in the model: one line saying how to add it."""
        heads = self.model.pretraining_heads
        for term in ("inter_image", "mlm"):  # each term's head has the term's name
            if term in weights and (heads is None or getattr(heads, term) is None):
                raise ValueError(f"loss.{term} = {weights[term]:g} needs the model's {term} pre-training "
                                 f"head: add model.overrides: {{pretraining: {{{term}: true}}}} (to start from "
                                 "weights saved without it, load them with model.init_from, not model.weights)")
        if "mask" in weights and self.model.mask_head is None:
            raise ValueError(f"loss.mask = {weights['mask']:g} needs the model's mask head: add "
                             "model.overrides: {mask_head: {enabled: true}} (to start from weights saved without it, "
                             "load them with model.init_from, not model.weights)")

    def step_generator(self, micro_batch: int) -> torch.Generator:
        """The random stream of one micro-batch's pre-training terms (MLM masking, L_inter's draw
        of positives): a function of (seed, step, rank, micro-batch) only, so a resume draws alike."""
        entropy = [self.config.train.seed, self.step, self.context.rank, micro_batch]
        return torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """What a resume needs. Frozen parameters that building the model restores are left out
        of the model and EMA weights; ``frozen`` names them, with their source and fingerprint."""
        left_out = [name for name, parameter in self.model.named_parameters()
                    if not parameter.requires_grad and name in self.rebuilt]
        frozen = checkpointing.frozen_record(self.model, left_out, self.sources) if left_out else None
        ema = None
        if self.ema is not None:
            ema = {"decay": self.ema.decay, "weights": checkpointing.stored_weights(self.ema.module, frozen)}
        return {
            "format": checkpointing.TRAINING_FORMAT, "version": 2,
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "world_size": self.context.world_size, "batch_size": self.config.train.batch_size,
            "model": checkpointing.stored_weights(self.model, frozen), "frozen": frozen,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "ema": ema,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "config": self.config_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current state (main process; all processes must call this)."""
        rng_states = self.context.all_gather(checkpointing.rng_state())
        path = None
        if self.context.is_main:
            payload = self.state()
            payload["rng"] = rng_states
            path = checkpointing.save_checkpoint(self.output_dir / "checkpoints", self.step, payload,
                                                 self.config.output.keep_last)
        self.context.barrier()
        return path

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything from a training checkpoint (RNG included: call last before the loop)."""
        state = checkpointing.load_checkpoint(path)
        self._check_checkpoint(state, path)
        _warn_config_changes(state.get("config", {}), self.config_dict())
        frozen = state.get("frozen")  # None in checkpoints that store every parameter (version 1)
        checkpointing.restore_weights(self.model, state["model"], frozen, str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if state["ema"] is None:
                logger.warning("%s has no EMA: the EMA restarts from the current weights", path)
                self.ema = ModelEMA(self.model, self.ema.decay)
            else:
                checkpointing.restore_weights(self.ema.module, state["ema"]["weights"], frozen, f"{path} (EMA)")
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
            (self.output_dir / "config.yaml").write_text(yaml.safe_dump(self.config_dict(), sort_keys=False))
        self.context.barrier()
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
    def autocast(self) -> AbstractContextManager:
        """Autocast at ``train.amp``'s dtype for a forward pass (a no-op at full precision)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def loss_terms(self, batch: TrainingBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Forward one micro-batch (under autocast if enabled) and return the unweighted terms.
        ``generator``: the random stream of the pre-training terms (default: `step_generator` (0))."""
        if generator is None:
            generator = self.step_generator(0)
        input_ids, mlm_labels = batch.input_ids, None
        if self.mlm_vocabulary is not None:  # mask before the forward: the grounding losses see the masked prompt
            settings = self.config.loss
            allowed = (positive_token_mask(batch.targets, input_ids.shape[1]) if settings.mlm_only_positive_spans
                       else None)
            masked = mask_tokens(input_ids, batch.attention_mask, generator=generator,
                                 probability=settings.mlm_probability, allowed=allowed, **self.mlm_vocabulary)
            input_ids, mlm_labels = masked.input_ids, masked.labels
        with self.autocast():
            output = self.ddp_model(batch.images, input_ids, batch.attention_mask)
        if self.amp_dtype is not None:
            output = _to_float32(output)
        terms = self.loss_fn(output, batch.targets, batch.attention_mask)
        heads = self.model.pretraining_heads
        if self.inter_image_loss is not None:
            terms["inter_image"] = self.inter_image_loss(output, batch.targets, batch.attention_mask,
                                                         heads.inter_image, generator)
        if mlm_labels is not None:
            terms["mlm"] = mlm_loss(heads.mlm(output.head.text), mlm_labels)
        if self.mask_loss is not None:
            terms["mask"] = self.mask_loss(output, batch.targets, tuple(batch.images.shape[-2:]), self.model.mask_head,
                                           generator)
        return terms

    def train_step(self, micro_batches: list[TrainingBatch]) -> tuple[dict[str, float], bool]:
        """One optimizer step over the micro-batches. Returns the values to log and whether the
        step was taken: False (and nothing changed) when the loss or the gradient is not finite
        on any process."""
        self.ddp_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums = dict.fromkeys(self.terms, 0.0)
        finite = True
        for index, batch in enumerate(micro_batches):
            batch = batch.to(self.device, non_blocking=True)
            last = index == len(micro_batches) - 1
            sync = nullcontext() if last or self.ddp_model is self.model else self.ddp_model.no_sync()
            with sync:
                terms = self.loss_terms(batch, self.step_generator(index))
                total = sum(self.loss_weights[k] * terms[k] for k in self.terms) / len(micro_batches)
                finite &= bool(torch.isfinite(total))
                (self.scaler.scale(total) if self.scaler else total).backward()
            for key in self.terms:
                sums[key] += float(terms[key].detach()) / len(micro_batches)
        sums["loss"] = sum(self.loss_weights[k] * sums[k] for k in self.terms)
        if self.context.any(not finite):
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
        sources = [s for part in self.context.all_gather(sources) for s in part]
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
        self.ddp_model = self.context.wrap(self.model, train.find_unused_parameters)
        metrics = (MetricsLog(self.output_dir, config.output.tensorboard, resumed_step, self.terms)
                   if self.context.is_main else None)
        images_per_step = train.batch_size * train.grad_accumulation * self.context.world_size
        bar = tqdm(total=train.max_steps, initial=self.step, unit="step", dynamic_ncols=True, desc="train",
                   disable=not (self.context.is_main and config.output.progress))
        stream = self.batches()
        window = {"values": dict.fromkeys((*self.terms, "loss", "grad_norm"), 0.0), "steps": 0,
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
                bar.set_postfix({k: f"{values[k]:.3f}" for k in ("loss", *self.terms)} | {"img/s": f"{speed:.1f}"},
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
        averaged = self.context.mean({k: v / steps for k, v in window["values"].items()})
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
        self.context.barrier()
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


def train(config: TrainConfig, resume: bool | None = None, trainer_class: type[Trainer] | None = None) -> Path:
    """Train as ``config`` says, on one process or under ``torchrun``; returns the final model path.
    ``trainer_class``: a subclass of `Trainer` taking ``(config, context)`` (default `Trainer`), e.g.
    `CaptionTrainer` or `VqaTrainer` with their own config classes.

    Example:
        >>> path = train(load_train_config("tiny.yaml"))  # doctest: +SKIP
        >>> GLIPPredictor.from_pretrained(path).detect("a.jpg", classes=["circle"])  # doctest: +SKIP
    """
    try:
        context = init_distributed(config.train.device)
    except ValueError as error:
        raise ValueError(f"train.device: {error}") from None
    try:
        return (trainer_class or Trainer)(config, context).fit(resume)
    finally:
        context.close()
