"""The settings of ``glip finetune`` (`glip.transfer.finetune`), light to import: the command's
``--help`` and argument errors do not load the model stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Per mode: learning rate and steps when not given. The prompt embedding starts at zero and is
# added to unit-scale text features, so it takes a larger rate than weights already trained.
DEFAULT_LR = {"prompt": 5e-3, "linear": 1e-3, "full": 1e-4}
DEFAULT_STEPS = 200


@dataclass
class FinetuneConfig:
    train: str  # COCO detection JSON of the task's training images
    val: str | None = None  # COCO detection JSON to evaluate on (None: no evaluation)
    weights: str | None = None  # the base model (None: the embedded default)
    mode: str = "prompt"  # prompt | linear | full
    shots: int | None = None  # K images per category drawn from ``train`` (None: all of it)
    seed: int = 0  # few-shot sampling and training
    prompt_overrides: str | None = None  # YAML: category -> descriptive prompt
    train_images: str | None = None  # default: the training file's folder
    val_images: str | None = None  # default: the validation file's folder
    out: str = "runs/finetune"
    steps: int = DEFAULT_STEPS
    batch_size: int = 4
    lr: float | None = None  # default: DEFAULT_LR[mode]
    language_lr: float = 1e-5  # full mode: the language backbone's rate
    warmup_steps: int = 20
    device: str | None = None
    resume: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # free notes copied into result.json
