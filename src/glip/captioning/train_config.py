"""The caption training configuration: GLIP's training sections plus the caption data and loss.

The model, input, optimiser, train and output sections are those of `glip train`
(`glip.training.train_config`, same fields and defaults); ``data`` lists caption files and ``loss``
has the one term. A YAML file needs only what differs::

    model: {config: glip-nano, init_from: src/glip/weights/glip-nano.safetensors,
            overrides: {caption: {enabled: true}}}
    data:
      train: [{annotations: data/shapes/captions-train/captions.jsonl}]
    train: {max_steps: 2000, batch_size: 8}
    output: {dir: runs/caption}

Example:
    >>> config = load_caption_train_config("configs/caption-shapes.yaml", ["train.max_steps=2"])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glip.training.train_config import (InputSection, ModelSection, OptimSection, OutputSection, TrainConfig,
                                        TrainConfigError, TrainSection, _build, load_train_config, validate)


@dataclass
class CaptionFileSection:
    annotations: str = ""  # a caption JSON Lines file ({image, captions}) or a COCO captions JSON
    images: str | None = None  # COCO captions JSON: the image folder (None = the file's folder)


@dataclass
class CaptionDataSection:
    train: list[CaptionFileSection] = field(default_factory=list)  # all files are read and joined
    on_error: str = "raise"  # a bad record: "raise" or "skip" (logged); a missing image always raises


@dataclass
class CaptionLossSection:
    caption: float = 1.0  # weight of the next-token cross-entropy (`glip.training.caption_loss`)


@dataclass
class CaptionInputSection(InputSection):
    flip_prob: float = 0.0  # captions name left and right: a flipped picture would contradict them (must stay 0)


@dataclass
class CaptionTrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: CaptionDataSection = field(default_factory=CaptionDataSection)
    input: CaptionInputSection = field(default_factory=CaptionInputSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: CaptionLossSection = field(default_factory=CaptionLossSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=lambda: OutputSection(dir="runs/caption"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaptionTrainConfig":
        config = _build(cls, data, "")
        validate_caption_config(config)
        return config

    def as_train_config(self) -> TrainConfig:
        """The sections the GLIP trainer reads (its loss section at its defaults: unused here)."""
        return TrainConfig(model=self.model, input=self.input, optim=self.optim, train=self.train,
                           output=self.output)


def validate_caption_config(config: CaptionTrainConfig) -> None:
    """The checks of `glip train` on the shared sections, plus the caption sections'."""
    validate(config.as_train_config())
    if not config.data.train:
        raise TrainConfigError("data.train is empty: list the caption files, e.g. "
                               "data: {train: [{annotations: captions.jsonl}]}")
    for index, source in enumerate(config.data.train):
        if not source.annotations:
            raise TrainConfigError(f"data.train.{index}.annotations: give a caption file (.jsonl or COCO captions JSON)")
    if config.data.on_error not in ("raise", "skip"):
        raise TrainConfigError(f"data.on_error must be raise or skip, got '{config.data.on_error}'")
    if config.input.flip_prob != 0.0:
        raise TrainConfigError("input.flip_prob must be 0 for captions: a flipped picture would contradict "
                               "'left' and 'right' in its captions")
    if config.loss.caption <= 0:
        raise TrainConfigError("loss.caption is the weight of the only term: it must be positive")


def load_caption_train_config(path: str | Path | None = None,
                              overrides: list[str] | None = None) -> CaptionTrainConfig:
    """Read a YAML caption training config and apply ``key.sub=value`` overrides."""
    return load_train_config(path, overrides, config_class=CaptionTrainConfig)
