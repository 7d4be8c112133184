"""Optimizer groups, freezing, the learning-rate schedule and the EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from glip.training.ema import ModelEMA
from glip.training.optim import WarmupDecaySchedule, build_optimizer, freeze_parameters
from glip.training.train_config import OptimSection


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.text_encoder = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_language_backbone_has_its_own_learning_rate() -> None:
    optimizer = build_optimizer(Toy(), OptimSection(lr=1e-3, language_lr=1e-5))
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert groups["main"]["lr"] == 1e-3 and len(groups["main"]["params"]) == 4
    assert groups["language"]["lr"] == 1e-5 and len(groups["language"]["params"]) == 2


def test_lr_multipliers_give_a_prefix_its_own_rate_that_follows_the_schedule() -> None:
    optimizer = build_optimizer(Toy(), OptimSection(lr=1e-3, language_lr=1e-5, lr_multipliers={"head": 20.0}))
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert groups["lr:head"]["lr"] == pytest.approx(2e-2) and len(groups["lr:head"]["params"]) == 2
    assert groups["main"]["lr"] == 1e-3 and len(groups["main"]["params"]) == 2  # the backbone only
    assert groups["language"]["lr"] == 1e-5
    schedule = WarmupDecaySchedule(optimizer, max_steps=10, warmup_steps=0, schedule="cosine")
    for _ in range(5):
        optimizer.step()
        schedule.step()
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates["lr:head"] == pytest.approx(20 * rates["main"]) and rates["main"] < 1e-3
    for bad in ["heads", "text_encoder"]:
        with pytest.raises(ValueError, match=f"lr_multipliers: '{bad}' matches no parameter"):
            build_optimizer(Toy(), OptimSection(lr_multipliers={bad: 2.0}))


def test_freeze_by_prefix() -> None:
    model = Toy()
    assert freeze_parameters(model, ["backbone", "text_encoder.weight"]) == 6 + 4
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"text_encoder.bias", "head.weight", "head.bias"}
    optimizer = build_optimizer(model, OptimSection())
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 3
    with pytest.raises(ValueError, match="'back' matches no parameter; top-level modules: backbone, head"):
        freeze_parameters(Toy(), ["back"])


def _factors(**kwargs) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupDecaySchedule(optimizer, **kwargs)
    factors = []
    for _ in range(kwargs["max_steps"]):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return factors


def test_warmup_then_steps() -> None:
    factors = _factors(max_steps=100, warmup_steps=10, warmup_factor=0.1, schedule="step",
                       milestones=[0.5, 0.8], gamma=0.1)
    assert factors[0] == pytest.approx(0.1) and factors[5] == pytest.approx(0.55)
    assert factors[10:50] == pytest.approx([1.0] * 40)
    assert factors[50:80] == pytest.approx([0.1] * 30) and factors[80:] == pytest.approx([0.01] * 20)


def test_cosine_decays_to_the_floor() -> None:
    factors = _factors(max_steps=110, warmup_steps=10, warmup_factor=0.0, schedule="cosine", min_lr_factor=0.1)
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[-1] > 0.1 and all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_schedule_state_round_trip() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupDecaySchedule(optimizer, max_steps=20, warmup_steps=5, schedule="cosine")
    for _ in range(7):
        optimizer.step()
        schedule.step()
    other_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    other = WarmupDecaySchedule(other_optimizer, max_steps=20, warmup_steps=5, schedule="cosine")
    other.load_state_dict(schedule.state_dict())
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert other.last_epoch == 7


def test_ema_update_and_state() -> None:
    model = Toy()
    ema = ModelEMA(model, decay=0.9)
    before = model.head.weight.detach().clone()
    with torch.no_grad():
        model.head.weight.add_(1.0)
        model.count.fill_(3)
    ema.update(model)
    torch.testing.assert_close(ema.module.head.weight, before * 0.9 + (before + 1.0) * 0.1)
    assert int(ema.module.count) == 3 and not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    restored = ModelEMA(Toy(), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.9
    torch.testing.assert_close(restored.module.head.weight, ema.module.head.weight)


def test_ema_copies_frozen_parameters_exactly():
    import torch
    from torch import nn

    from glip.training.ema import ModelEMA

    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    ema = ModelEMA(model, decay=0.9)
    with torch.no_grad():
        model[1].weight.add_(1.0)
    for _ in range(50):
        ema.update(model)
    assert torch.equal(ema.module[0].weight, model[0].weight)
    assert not torch.equal(ema.module[1].weight, model[1].weight)
