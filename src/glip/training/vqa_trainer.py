"""VQA fine-tuning: a GLIP model and a new answer head trained on questions, one process.

The pieces are the detection trainer's: the starting model (`glip.training.starting_model`),
freezing and AdamW with its warm-up/decay schedule (`glip.training.optim`), the EMA, the metric
log, atomic training checkpoints with exact resume (`glip.training.checkpointing`: model,
optimizer, schedule, EMA, RNG states, data position; frozen parameters that building the model
gives back are left out and fingerprinted) and the resumable sample order. What is VQA's own: the
data (`glip.data.vqa_training`), the answer vocabulary built from the training answers, the loss
(`glip.training.vqa_loss`) and the output, ``OUTPUT/model.safetensors`` (the GLIP weights, EMA
when on) with its head ``OUTPUT/model.vqa.safetensors`` and vocabulary ``OUTPUT/model.vqa.json``
(`glip.vqa_head_files`), which `GLIPPredictor.from_pretrained` loads together.

Example:
    >>> from glip.training.vqa_config import load_vqa_train_config
    >>> model_path = VqaTrainer(load_vqa_train_config("configs/vqa-shapes.yaml")).fit()  # doctest: +SKIP
"""

from __future__ import annotations

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
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from glip.checkpoint import save_glip
from glip.data.sampler import ResumableShardedSampler
from glip.data.vqa import VqaQuestion, read_vqa
from glip.data.vqa_answers import AnswerVocabulary
from glip.data.vqa_training import VqaBatch, VqaCollator, VqaTrainingSet
from glip.distributed import resolve_device
from glip.modeling.glip import GLIP
from glip.modeling.vqa_head import VqaHead, VqaHeadConfig, VqaOutput
from glip.tokenizer import load_tokenizer
from glip.training import checkpointing
from glip.training.ema import ModelEMA
from glip.training.metrics_log import MetricsLog
from glip.training.optim import build_optimizer, build_scheduler, freeze_parameters
from glip.training.starting_model import build_model
from glip.training.trainer import FINAL_MODEL_NAME, NonFiniteLossError, resolve_amp
from glip.training.vqa_config import VqaSourceSection, VqaTrainConfig
from glip.training.vqa_loss import vqa_loss
from glip.vqa_head_files import head_path_for, save_vqa_head

logger = logging.getLogger(__name__)

VQA_TRAINING_FORMAT = "glip-vqa-train"  # the "format" entry of a VQA training checkpoint
TERMS = ("vqa",)


class VqaModel(nn.Module):
    """The fused encoder and its answer head, trained together (parameter names ``glip.*``, ``answer_head.*``)."""

    def __init__(self, glip: GLIP, answer_head: VqaHead) -> None:
        super().__init__()
        self.glip = glip
        self.answer_head = answer_head

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> VqaOutput:
        """images: [B, 3, H, W]; input_ids, attention_mask: [B, L] -> logits [B, num_answers]."""
        fused = self.glip.fused_features(images, input_ids, attention_mask)
        return self.answer_head(fused.text, fused.text_mask, fused.visual)


def read_sources(sources: list[VqaSourceSection]) -> list[VqaQuestion]:
    """The questions of every source, in order (VQA2.0 JSON or JSON Lines)."""
    questions: list[VqaQuestion] = []
    for source in sources:
        questions.extend(read_vqa(source.questions, source.annotations, source.images, source.on_error,
                                  source.image_pattern))
    return questions


class VqaTrainer:
    """Builds everything from a `VqaTrainConfig`; :meth:`fit` trains (or resumes) and returns the
    exported model's path (its head beside it)."""

    def __init__(self, config: VqaTrainConfig, questions: list[VqaQuestion] | None = None) -> None:
        self.config = config
        train = config.train
        try:
            self.device = resolve_device(train.device)
        except ValueError as error:
            raise ValueError(f"train.device: {error}") from None
        self.output_dir = Path(config.output.dir)
        _seed(train.seed)
        questions = read_sources(config.data.train) if questions is None else questions
        self.vocabulary = AnswerVocabulary.build([q.answers for q in questions if q.answers],
                                                 config.data.min_answer_count)
        start = build_model(config.model)
        glip, self.sources = start.model, start.sources
        if train.freeze:
            frozen = freeze_parameters(glip, train.freeze)
            logger.info("froze %d parameters of the GLIP model (%s)", frozen, ", ".join(train.freeze))
        self.rebuilt = frozenset(f"glip.{name}" for name in start.sourced)
        head_config = VqaHeadConfig(len(self.vocabulary), config.head.hidden_dim, config.head.dropout,
                                    config.head.use_visual)
        head = VqaHead(head_config, glip.config.text.hidden_size, glip.config.head.channels)
        self.model = VqaModel(glip, head).to(self.device)
        self.optimizer = build_optimizer(self.model, config.optim, language_prefix="glip.text_encoder.")
        self.scheduler = build_scheduler(self.optimizer, config.optim, train.max_steps)
        self.ema = ModelEMA(self.model, train.ema_decay) if train.ema_decay else None
        self.amp_dtype = resolve_amp(train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.dataset = VqaTrainingSet(questions, self.vocabulary)
        if len(self.dataset) < train.batch_size:
            raise ValueError(f"the VQA training data has {len(self.dataset)} questions, fewer than one batch "
                             f"({train.batch_size})")
        self.collator = VqaCollator(load_tokenizer(), glip.config.text.max_length, glip.config.input)
        self.sampler = ResumableShardedSampler(len(self.dataset), seed=train.seed)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.step = self.epoch = self.position = 0
        logger.info("VQA: %d training questions, %d answers in the vocabulary (%.1f%% of questions' most common "
                    "answer covered)", len(questions), len(self.vocabulary), 100 * self.coverage(questions))

    def coverage(self, questions: list[VqaQuestion]) -> float:
        """Fraction of questions whose most common answer is in the vocabulary."""
        answered = [q for q in questions if q.multiple_choice_answer is not None]
        covered = sum(self.vocabulary.index(q.multiple_choice_answer) is not None for q in answered)
        return covered / max(len(answered), 1)

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """What an exact resume needs (see `glip.training.checkpointing`)."""
        left_out = [name for name, parameter in self.model.named_parameters()
                    if not parameter.requires_grad and name in self.rebuilt]
        frozen = checkpointing.frozen_record(self.model, left_out, self.sources) if left_out else None
        ema = None
        if self.ema is not None:
            ema = {"decay": self.ema.decay, "weights": checkpointing.stored_weights(self.ema.module, frozen)}
        return {"format": VQA_TRAINING_FORMAT, "version": 1, "step": self.step, "epoch": self.epoch,
                "position": self.position, "answers": list(self.vocabulary.answers),
                "model": checkpointing.stored_weights(self.model, frozen), "frozen": frozen,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "ema": ema,
                "scaler": self.scaler.state_dict() if self.scaler else None, "config": self.config.to_dict(),
                "rng": checkpointing.rng_state()}

    def save_checkpoint(self) -> Path:
        return checkpointing.save_checkpoint(self.output_dir / "checkpoints", self.step, self.state(),
                                             self.config.output.keep_last)

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything from a VQA training checkpoint (RNG included: call last before the loop)."""
        state = checkpointing.load_checkpoint(path)
        if state.get("format") != VQA_TRAINING_FORMAT:
            raise ValueError(f"{path} is not a VQA training checkpoint (glip vqa-train)")
        if tuple(state["answers"]) != self.vocabulary.answers:
            raise ValueError(f"answer vocabulary mismatch: {path} was trained with {len(state['answers'])} answers, "
                             f"the data now gives {len(self.vocabulary)} (or in another order): resume with the "
                             "same data.train and data.min_answer_count")
        frozen = state.get("frozen")
        checkpointing.restore_weights(self.model, state["model"], frozen, str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            checkpointing.restore_weights(self.ema.module, state["ema"]["weights"], frozen, f"{path} (EMA)")
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.position = int(state["step"]), int(state["epoch"]), int(state["position"])
        checkpointing.set_rng_state(state["rng"])
        logger.info("resumed from %s (step %d, epoch %d, position %d)", path, self.step, self.epoch, self.position)

    def _start(self, resume: bool) -> int | None:
        latest = checkpointing.latest_checkpoint(self.output_dir / "checkpoints")
        if latest is not None and not resume:
            raise FileExistsError(f"{self.output_dir} already holds training checkpoints (latest {latest.name}): "
                                  "resume with --resume or choose another output.dir")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.yaml").write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        if resume and latest is not None:
            self.load_checkpoint(latest)
            return self.step
        return None

    # ------------------------------------------------------------ the loop
    def batches(self) -> Iterator[tuple[VqaBatch, int, int]]:
        """Endless ``(batch, epoch, position after it)`` from the saved data position on."""
        train = self.config.train
        epoch, position = self.epoch, self.position
        while True:
            self.sampler.set_epoch(epoch, position)
            generator = torch.Generator().manual_seed(train.seed * 1_000_003 + epoch)
            loader = DataLoader(self.dataset, batch_size=train.batch_size, sampler=self.sampler, drop_last=True,
                                collate_fn=self.collator, num_workers=train.num_workers, generator=generator)
            for batch in loader:
                position += train.batch_size
                yield batch, epoch, position
            epoch, position = epoch + 1, 0

    def train_step(self, micro_batches: list[VqaBatch]) -> tuple[dict[str, float], bool]:
        """One optimizer step; False (nothing changed) when the loss or the gradient is not finite."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        value, finite = 0.0, True
        for batch in micro_batches:
            batch = batch.to(self.device)
            autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                        else nullcontext())
            with autocast:
                output = self.model(batch.images, batch.input_ids, batch.attention_mask)
            term = vqa_loss(output.logits, batch.targets)["vqa"]
            total = self.config.loss_weight * term / len(micro_batches)
            finite &= bool(torch.isfinite(total))
            (self.scaler.scale(total) if self.scaler else total).backward()
            value += float(term.detach()) / len(micro_batches)
        values = {"vqa": value, "loss": self.config.loss_weight * value}
        if not finite:
            return values, False
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        values["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.trainable,
                                                                   self.config.optim.grad_clip or math.inf))
        if self.scaler is None and not math.isfinite(values["grad_norm"]):
            return values, False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return values, True

    def fit(self, resume: bool | None = None) -> Path:
        """Train to ``train.max_steps`` (resuming if asked), then export; returns the model file's path."""
        config, train = self.config, self.config.train
        resumed = self._start(train.resume if resume is None else resume)
        metrics = MetricsLog(self.output_dir, config.output.tensorboard, resumed, TERMS)
        bar = tqdm(total=train.max_steps, initial=self.step, unit="step", desc="vqa-train", dynamic_ncols=True,
                   disable=not config.output.progress)
        stream = self.batches()
        window: dict[str, float] = {"vqa": 0.0, "loss": 0.0, "grad_norm": 0.0, "steps": 0}
        started = window_start = time.perf_counter()
        try:
            while self.step < train.max_steps:
                pulled = [next(stream) for _ in range(train.grad_accumulation)]
                values, taken = self.train_step([batch for batch, _, _ in pulled])
                if not taken:
                    path = self.save_checkpoint()
                    raise NonFiniteLossError(f"non-finite VQA loss or gradient at step {self.step + 1} "
                                             f"({values}); batch: {pulled[-1][0].describe()}; the last good state "
                                             f"(step {self.step}) is saved as {path}")
                self.step += 1
                _, self.epoch, self.position = pulled[-1]
                for key in ("vqa", "loss", "grad_norm"):
                    window[key] += values[key]
                window["steps"] += 1
                bar.update(1)
                bar.set_postfix({"loss": f"{values['loss']:.3f}"}, refresh=False)
                if self.step % config.output.log_every == 0 or self.step == train.max_steps:
                    self._log(metrics, window, time.perf_counter() - window_start, time.perf_counter() - started)
                    window, window_start = dict.fromkeys(window, 0.0), time.perf_counter()
                if self.step % config.output.checkpoint_every == 0 or self.step == train.max_steps:
                    self.save_checkpoint()
        finally:
            stream.close()
            bar.close()
            metrics.close()
        return self.export()

    def _log(self, metrics: MetricsLog, window: dict[str, float], seconds: float, elapsed: float) -> None:
        steps = max(int(window["steps"]), 1)
        lrs = {group.get("name", "main"): group["lr"] for group in self.optimizer.param_groups}
        images = steps * self.config.train.batch_size * self.config.train.grad_accumulation
        row = {"step": self.step, "epoch": self.epoch, "loss": window["loss"] / steps, "vqa": window["vqa"] / steps,
               "grad_norm": window["grad_norm"] / steps, "lr": lrs.get("main"), "language_lr": lrs.get("language"),
               "images_per_s": images / max(seconds, 1e-9), "elapsed_s": elapsed}
        metrics.log(row)
        logger.info("step %d: loss %.4g", self.step, row["loss"])

    def export(self) -> Path:
        """``OUTPUT/model.safetensors`` and its head (EMA weights when the run keeps an EMA)."""
        final = self.ema.module if self.ema is not None else self.model
        path = self.output_dir / FINAL_MODEL_NAME
        source = {"source": "glip vqa-train", "step": str(self.step)}
        save_glip(final.glip, path, {**source, "weights": "ema" if self.ema is not None else "model"})
        save_vqa_head(final.answer_head, self.vocabulary, head_path_for(path), final.glip, source)
        logger.info("final model -> %s, VQA head -> %s", path, head_path_for(path))
        return path


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
