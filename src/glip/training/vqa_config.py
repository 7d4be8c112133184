"""The VQA fine-tuning configuration (`glip vqa-train CONFIG.yaml key=value ...`).

The model, optimizer, train and output sections are those of `glip.training.train_config` (same
fields, same defaults, same ``key.sub=value`` overrides); ``data`` names VQA sources and ``head``
the answer head. A YAML file only needs what differs::

    model: {config: src/glip/weights/glip-nano.json, weights: src/glip/weights/glip-nano.safetensors}
    data:
      train: [{questions: data/shapes/vqa/questions.json, annotations: data/shapes/vqa/annotations.json}]
      val: [{questions: data/shapes-test/vqa/vqa.jsonl}]
    head: {hidden_dim: 256}
    train: {max_steps: 1000, batch_size: 8, freeze: [backbone, text_encoder]}
    output: {dir: runs/vqa-shapes}

``train.freeze`` names parameters of the GLIP model (``backbone``, ``text_encoder``, ``head``);
the answer head always trains. ``optim.lr_multipliers`` may name ``answer_head`` (a new layer on a
trained model often learns faster). The training data has no multi-scale nor flip: images are
read at the model's own input size.

Example:
    >>> config = load_vqa_train_config("configs/vqa-shapes.yaml", ["train.max_steps=10"])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glip.modeling.vqa_head import VISUAL_FEATURES, VISUAL_POOLING
from glip.training.train_config import (ModelSection, OptimSection, OutputSection, TrainConfig, TrainConfigError,
                                        TrainSection, _build, load_train_config, validate)


@dataclass
class VqaSourceSection:
    # VQA2.0 questions file (with ``annotations``) or a JSON Lines file of {image, question, answers}.
    questions: str = ""
    annotations: str | None = None  # VQA2.0 annotations file (JSON form only)
    images: str | None = None  # folder of the images (default: the questions file's folder)
    image_pattern: str | None = None  # VQA2.0 without an 'images' list: e.g. "COCO_train2014_{image_id:012d}.jpg"
    on_error: str = "raise"  # a malformed record: "raise" (stop, naming it) or "skip" (count and log)


@dataclass
class VqaDataSection:
    train: list[VqaSourceSection] = field(default_factory=list)
    val: list[VqaSourceSection] = field(default_factory=list)  # scored with VQA accuracy after training
    # An answer enters the vocabulary when it is the most common answer of at least this many
    # training questions (9 in the bottom-up attention recipe for VQA2.0, 3,129 answers).
    min_answer_count: int = 9


@dataclass
class VqaHeadSection:
    hidden_dim: int = 512  # width of the projected question and image (see glip.modeling.vqa_head)
    dropout: float = 0.1  # before the answer layer, training only
    use_visual: bool = True  # also read the fused image features, pooled
    visual_pooling: str = "question"  # "question": attention from the question to the locations; "mean"
    attention_heads: int = 4  # heads of that attention (divides hidden_dim)
    visual_features: str = "fused"  # "fused"; "fpn+fused": each location's FPN (normalised) and fused features


@dataclass
class VqaTrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: VqaDataSection = field(default_factory=VqaDataSection)
    head: VqaHeadSection = field(default_factory=VqaHeadSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=lambda: OutputSection(dir="runs/vqa"))
    # Weight of the VQA term (binary cross-entropy on soft scores); the loss is weight x term.
    loss_weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VqaTrainConfig":
        config = _build(cls, data, "")
        validate_vqa_config(config)
        return config

    def as_train_config(self) -> TrainConfig:
        """The sections the GLIP trainer reads (its data, input and loss sections at their defaults:
        unused here, the images are read at the model's own input size)."""
        return TrainConfig(model=self.model, optim=self.optim, train=self.train, output=self.output)


def validate_vqa_config(config: VqaTrainConfig) -> None:
    """The checks of `glip train` on the shared sections, plus those of the VQA sections."""
    def need(condition: bool, message: str) -> None:
        if not condition:
            raise TrainConfigError(message)

    validate(config.as_train_config())
    need(bool(config.data.train), "data.train needs at least one VQA source ({questions: FILE, annotations: FILE})")
    for part in ("train", "val"):
        for index, source in enumerate(getattr(config.data, part)):
            where = f"data.{part}.{index}"
            need(bool(source.questions), f"{where}.questions: give a VQA2.0 questions file or a .jsonl file")
            need(source.on_error in ("raise", "skip"), f"{where}.on_error must be raise or skip")
            need(not (source.annotations and source.questions.endswith(".jsonl")),
                 f"{where}: a .jsonl file holds its answers; leave out annotations")
    need(config.data.min_answer_count >= 1, "data.min_answer_count must be >= 1")
    need(config.head.hidden_dim >= 1, "head.hidden_dim must be >= 1")
    need(0.0 <= config.head.dropout < 1.0, "head.dropout must be in [0, 1)")
    need(config.head.visual_pooling in VISUAL_POOLING,
         f"head.visual_pooling must be {' or '.join(VISUAL_POOLING)}, got {config.head.visual_pooling!r}")
    need(config.head.visual_features in VISUAL_FEATURES,
         f"head.visual_features must be {' or '.join(VISUAL_FEATURES)}, got {config.head.visual_features!r}")
    need(config.head.attention_heads >= 1 and config.head.hidden_dim % config.head.attention_heads == 0,
         f"head.attention_heads ({config.head.attention_heads}) must divide head.hidden_dim ({config.head.hidden_dim})")
    need(config.loss_weight > 0, "loss_weight must be positive")


def load_vqa_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> VqaTrainConfig:
    """Read a YAML VQA training config (None = all defaults) and apply ``key.sub=value`` overrides."""
    return load_train_config(path, overrides, config_class=VqaTrainConfig)
