"""Optimizer and learning-rate schedule: AdamW with a separate language-backbone learning rate,
linear warm-up, then step or cosine decay. Freezing of parameters by name prefix.

Example:
    >>> optimizer = build_optimizer(model, OptimSection(lr=1e-4, language_lr=1e-5))  # doctest: +SKIP
    >>> scheduler = WarmupDecaySchedule(optimizer, max_steps=1000, warmup_steps=100)  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import logging
import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from glip.training.train_config import OptimSection

logger = logging.getLogger(__name__)

LANGUAGE_PREFIX = "text_encoder."  # the language backbone (official: language_backbone.*)


def _matches(name: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def freeze_parameters(model: nn.Module, prefixes: list[str]) -> int:
    """Stop gradients for every parameter whose name starts with one of ``prefixes`` (whole name
    parts: "backbone" freezes ``backbone.*``). Returns how many parameters were frozen; a prefix
    that matches nothing is an error naming the model's top-level modules."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(_matches(name, prefix) for name in names):
            top = sorted({name.split(".")[0] for name in names})
            raise ValueError(f"train.freeze: '{prefix}' matches no parameter; top-level modules: {', '.join(top)}")
    frozen = 0
    for name, parameter in model.named_parameters():
        if any(_matches(name, prefix) for prefix in prefixes):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def build_optimizer(model: nn.Module, config: OptimSection,
                    language_prefix: str = LANGUAGE_PREFIX) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: the language backbone (names under ``language_prefix``)
    at ``language_lr``, parameters under a prefix of ``lr_multipliers`` at ``lr`` times its factor
    (group named ``lr:<prefix>``), everything else at ``lr``. Each group remembers its name in
    ``group["name"]``. ``language_prefix`` differs when the GLIP model sits inside another module
    (``glip.text_encoder.`` in the VQA model)."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in config.lr_multipliers:
        if not any(_matches(name, prefix) for name in names) or prefix.startswith(language_prefix.rstrip(".")):
            raise ValueError(f"optim.lr_multipliers: '{prefix}' matches no parameter outside the language backbone")
    language, other = [], []
    scaled: dict[str, list[nn.Parameter]] = {prefix: [] for prefix in config.lr_multipliers}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.startswith(language_prefix):
            language.append(parameter)
            continue
        prefix = next((p for p in config.lr_multipliers if _matches(name, p)), None)
        (other if prefix is None else scaled[prefix]).append(parameter)
    groups = []
    if other:
        groups.append({"name": "main", "params": other, "lr": config.lr})
    for prefix, parameters in scaled.items():
        if parameters:
            groups.append({"name": f"lr:{prefix}", "params": parameters, "lr": config.lr * config.lr_multipliers[prefix]})
    if language:
        groups.append({"name": "language", "params": language, "lr": config.language_lr})
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen (see train.freeze)")
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps,
                             weight_decay=config.weight_decay)


class WarmupDecaySchedule(LRScheduler):
    """Learning-rate factor per optimizer step: linear warm-up from ``warmup_factor`` to 1 over
    ``warmup_steps`` (official WarmupMultiStepLR, linear method), then either ``gamma`` to the power
    of the milestones passed (``schedule="step"``, milestones as fractions of ``max_steps``) or a
    half cosine from 1 down to ``min_lr_factor`` between the end of warm-up and ``max_steps``.
    Its state is plain numbers, so it checkpoints with ``state_dict``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_steps: int, warmup_steps: int = 0,
                 warmup_factor: float = 0.001, schedule: str = "step", milestones: list[float] = (0.67, 0.89),
                 gamma: float = 0.1, min_lr_factor: float = 0.0) -> None:
        if schedule not in ("step", "cosine"):
            raise ValueError(f"unknown schedule '{schedule}' (step or cosine)")
        self.max_steps = max_steps
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        self.schedule = schedule
        self.milestone_steps = sorted(int(round(m * max_steps)) for m in milestones)
        self.gamma = gamma
        self.min_lr_factor = min_lr_factor
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """The multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
        warmup = 1.0
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            warmup = self.warmup_factor * (1 - alpha) + alpha
        if self.schedule == "step":
            return warmup * self.gamma ** bisect.bisect_right(self.milestone_steps, step)
        span = max(self.max_steps - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        cosine = self.min_lr_factor + (1 - self.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return warmup * cosine

    def get_lr(self) -> list[float]:
        factor = self.factor(self.last_epoch)
        return [base * factor for base in self.base_lrs]

    def state_dict(self) -> dict[str, int]:
        """Only the step: the rates are a closed form of it, so a resumed run follows its config
        (the same config continues exactly; a longer ``max_steps`` stretches the schedule)."""
        return {"last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimSection, max_steps: int) -> WarmupDecaySchedule:
    return WarmupDecaySchedule(optimizer, max_steps=max_steps, warmup_steps=config.warmup_steps,
                               warmup_factor=config.warmup_factor, schedule=config.schedule,
                               milestones=config.step_milestones, gamma=config.gamma,
                               min_lr_factor=config.min_lr_factor)
