"""``glip vqa-train``: GLIP's trainer with a new answer head, the VQA data and the one VQA term.

`VqaTrainer` is `glip.training.trainer.Trainer` (starting model and freezing, AdamW with its
warm-up/decay schedule, gradient clipping, EMA, atomic checkpoints with exact resume, the metric
log) with these changes: the model trained is the GLIP model with an answer head (`VqaModel`) over
an answer vocabulary built from the training answers; the data are questions
(`glip.data.vqa_training`); a step's loss is the single named term ``vqa``
(`glip.training.vqa_loss`); the checkpoints record the VQA config and the vocabulary (a resume with
other answers is refused); and the output is ``OUTPUT/model.safetensors`` (the GLIP weights, EMA
when on) with its head ``OUTPUT/model.vqa.safetensors`` and vocabulary ``OUTPUT/model.vqa.json``
(`glip.vqa_head_files`), which `GLIPPredictor.from_pretrained` loads together.

One process only, as for captions.

Example:
    >>> from glip.training.trainer import train
    >>> from glip.training.vqa_config import load_vqa_train_config
    >>> config = load_vqa_train_config("configs/vqa-shapes.yaml")  # doctest: +SKIP
    >>> path = train(config, trainer_class=VqaTrainer)  # the model; its head beside it  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glip.checkpoint import save_glip
from glip.data.vqa import VqaQuestion, read_vqa
from glip.data.vqa_answers import AnswerVocabulary
from glip.data.vqa_training import VqaBatch, VqaCollator, VqaTrainingSet
from glip.distributed import DistributedContext
from glip.modeling.glip import GLIP
from glip.modeling.vqa_head import VqaHead, VqaHeadConfig, VqaOutput
from glip.tokenizer import load_tokenizer
from glip.training.optim import LANGUAGE_PREFIX
from glip.training.trainer import FINAL_MODEL_NAME, Trainer
from glip.training.vqa_config import VqaSourceSection, VqaTrainConfig
from glip.training.vqa_loss import vqa_loss
from glip.vqa_head_files import head_path_for, save_vqa_head

logger = logging.getLogger(__name__)

VQA_TRAINING_FORMAT = "glip-vqa-train"  # the "format" entry of a VQA training checkpoint
VQA_TERM = "vqa"


class VqaModel(nn.Module):
    """The fused encoder and its answer head, trained together (parameter names ``glip.*``, ``answer_head.*``)."""

    def __init__(self, glip: GLIP, answer_head: VqaHead) -> None:
        super().__init__()
        self.glip = glip
        self.answer_head = answer_head

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> VqaOutput:
        """images: [B, 3, H, W]; input_ids, attention_mask: [B, L] -> logits [B, num_answers]."""
        fused = self.glip.fused_features(images, input_ids, attention_mask)
        return self.answer_head(fused.text, fused.text_mask, fused.visual, fused.image.levels)


def read_sources(sources: list[VqaSourceSection]) -> list[VqaQuestion]:
    """The questions of every source, in order (VQA2.0 JSON or JSON Lines)."""
    questions: list[VqaQuestion] = []
    for source in sources:
        questions.extend(read_vqa(source.questions, source.annotations, source.images, source.on_error,
                                  source.image_pattern))
    return questions


class VqaTrainer(Trainer):
    """See the module docstring. ``questions``: train on these instead of reading ``data.train``;
    ``model``: start from this GLIP model instead of building ``config.model`` (as for `Trainer`)."""

    language_prefix = "glip." + LANGUAGE_PREFIX  # the GLIP model sits under "glip." in `VqaModel`

    def __init__(self, config: VqaTrainConfig, context: DistributedContext | None = None,
                 questions: list[VqaQuestion] | None = None, model: GLIP | None = None) -> None:
        if context is not None and context.world_size > 1:
            raise ValueError("glip vqa-train runs in one process (no torchrun)")
        self.vqa_config = config
        questions = read_sources(config.data.train) if questions is None else questions
        self.vocabulary = AnswerVocabulary.build([q.answers for q in questions if q.answers],
                                                 config.data.min_answer_count)
        super().__init__(config.as_train_config(), context, VqaTrainingSet(questions, self.vocabulary), model)
        logger.info("VQA: %d training questions, %d answers in the vocabulary (%.1f%% of questions' most common "
                    "answer covered)", len(questions), len(self.vocabulary), 100 * self.coverage(questions))

    def coverage(self, questions: list[VqaQuestion]) -> float:
        """Fraction of questions whose most common answer is in the vocabulary."""
        answered = [q for q in questions if q.multiple_choice_answer is not None]
        covered = sum(self.vocabulary.index(q.multiple_choice_answer) is not None for q in answered)
        return covered / max(len(answered), 1)

    def _build_model(self, model: GLIP | None) -> VqaModel:
        """The GLIP model (``train.freeze`` names its parameters) and a new answer head, which always trains."""
        glip = super()._build_model(model)
        self.rebuilt = frozenset(f"glip.{name}" for name in self.rebuilt)
        head = self.vqa_config.head
        head_config = VqaHeadConfig(len(self.vocabulary), head.hidden_dim, head.dropout, head.use_visual,
                                    head.visual_pooling, head.attention_heads, head.visual_features)
        return VqaModel(glip, VqaHead(head_config, glip.config.text.hidden_size, glip.config.head.channels))

    def _build_losses(self) -> dict[str, float]:
        return {VQA_TERM: self.vqa_config.loss_weight}

    def _build_collator(self) -> VqaCollator:
        glip_config = self.model.glip.config
        return VqaCollator(load_tokenizer(), glip_config.text.max_length, glip_config.input)

    def loss_terms(self, batch: VqaBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The VQA term of one micro-batch (``generator`` is unused: the term draws nothing)."""
        with self.autocast():
            output = self.ddp_model(batch.images, batch.input_ids, batch.attention_mask)  # logits [B, num_answers]
        return {VQA_TERM: vqa_loss(output.logits, batch.targets)[VQA_TERM]}

    # ------------------------------------------------------------ checkpoints and output
    def config_dict(self) -> dict[str, Any]:
        return self.vqa_config.to_dict()  # the VQA config, not the GLIP sections the trainer was given

    def state(self) -> dict[str, Any]:
        return {**super().state(), "format": VQA_TRAINING_FORMAT, "answers": list(self.vocabulary.answers)}

    def _check_checkpoint(self, state: dict[str, Any], path: Path) -> None:
        if state.get("format") != VQA_TRAINING_FORMAT:
            raise ValueError(f"{path} is not a VQA training checkpoint (glip vqa-train)")
        if state.get("version", 1) < 2:
            raise ValueError(f"{path} was written by an earlier glip vqa-train and cannot be resumed: "
                             "start a new run in another output.dir")
        if tuple(state["answers"]) != self.vocabulary.answers:
            raise ValueError(f"answer vocabulary mismatch: {path} was trained with {len(state['answers'])} answers, "
                             f"the data now gives {len(self.vocabulary)} (or in another order): resume with the "
                             "same data.train and data.min_answer_count")

    def _export(self) -> Path:
        """``OUTPUT/model.safetensors`` and its head (EMA weights when the run keeps an EMA)."""
        final = self.ema.module if self.ema is not None else self.model
        path = self.output_dir / FINAL_MODEL_NAME
        source = {"source": "glip vqa-train", "step": str(self.step)}
        save_glip(final.glip, path, {**source, "weights": "ema" if self.ema is not None else "model"})
        save_vqa_head(final.answer_head, self.vocabulary, head_path_for(path), final.glip, source)
        logger.info("final model -> %s, VQA head -> %s", path, head_path_for(path))
        return path
