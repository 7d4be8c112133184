"""``glip caption-train``: GLIP's trainer with the caption data and the one caption term.

`CaptionTrainer` is `glip.training.trainer.Trainer` (optimiser and schedule, gradient clipping,
EMA, atomic checkpoints with exact resume, metrics.jsonl/csv, the exported model.safetensors) with
three changes: the data are caption pairs (`glip.captioning.data`), a step's loss is the single
named term ``caption`` (next-token cross-entropy of the causal pass), and the run's config.yaml is
the caption config. The model must have a caption head (``model.overrides: {caption: {enabled:
true}}``); the exported file holds it, and `GLIPPredictor` loads it with the rest of the model.

One process only: the caption pass calls the model's parts directly, which DistributedDataParallel
does not see.

Example:
    >>> path = train_captions(load_caption_train_config("configs/caption-shapes.yaml"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from glip.captioning.data import CaptionBatch, CaptionCollator, CaptionTrainingSet, caption_sources, read_caption_sources
from glip.captioning.train_config import CaptionTrainConfig
from glip.distributed import DistributedContext
from glip.modeling.caption_head import NO_CAPTION_HEAD, caption_context, caption_logits
from glip.tokenizer import load_tokenizer
from glip.training.caption_loss import caption_loss
from glip.training.trainer import Trainer, train

logger = logging.getLogger(__name__)

CAPTION_TERM = "caption"


def build_caption_dataset(config: CaptionTrainConfig, model_config) -> CaptionTrainingSet:
    """The caption pairs of ``config.data`` at the training sizes of ``config.input``."""
    records = read_caption_sources(caption_sources(config.data.train), config.data.on_error)
    return CaptionTrainingSet(records, load_tokenizer(), model_config.caption.max_tokens, config.input.min_sizes,
                              config.input.max_size, model_config.input, seed=config.train.seed)


class CaptionTrainer(Trainer):
    """See the module docstring. ``dataset``/``model`` as for `Trainer` (built from the config when None)."""

    def __init__(self, config: CaptionTrainConfig, context: DistributedContext | None = None,
                 dataset: CaptionTrainingSet | None = None, model=None) -> None:
        if context is not None and context.world_size > 1:
            raise ValueError("glip caption-train runs in one process (no torchrun)")
        self.caption_config = config
        if dataset is None:
            from glip.training.starting_model import build_model_config

            dataset = build_caption_dataset(config, build_model_config(config.model))
        super().__init__(config.as_train_config(), context, dataset, model)

    def _build_losses(self) -> dict[str, float]:
        if self.model.caption_head is None:
            raise ValueError(NO_CAPTION_HEAD.split(":")[0] + ": add model.overrides: {caption: {enabled: true}} "
                             "(to start from weights saved without it, load them with model.init_from)")
        return {CAPTION_TERM: self.caption_config.loss.caption}

    def _build_collator(self) -> CaptionCollator:
        return CaptionCollator(self.model.config.input.size_divisibility)

    def config_dict(self) -> dict[str, Any]:
        return self.caption_config.to_dict()  # the caption config, not the GLIP sections the trainer was given

    def loss_terms(self, batch: CaptionBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The caption term of one micro-batch (teacher forcing, all positions at once)."""
        with self.autocast():
            context = caption_context(self.model, self.model.encode_images(batch.images))
            logits = caption_logits(self.model, context, batch.input_ids, batch.attention_mask)  # [B, L, V]
        return {CAPTION_TERM: caption_loss(logits, batch.input_ids, batch.attention_mask)}


def train_captions(config: CaptionTrainConfig, resume: bool | None = None) -> Path:
    """Train the caption head (and whatever else is not frozen); returns the exported model path."""
    return train(config, resume, trainer_class=CaptionTrainer)
