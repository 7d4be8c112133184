"""The phrase cross-entropy term: its value on hand-computed cases, what it leaves out, and the
trainer's handling (named, logged, off by default, trains the names apart)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from synthetic_shapes import tiny_config
from glip.training.loss import phrase_cross_entropy
from glip.training.train_config import TrainConfig, TrainConfigError
from glip.training.trainer import Trainer


def test_a_one_token_phrase_is_softmax_cross_entropy() -> None:
    logits = torch.tensor([[1.0, 3.0, -1.0, 0.5]])
    targets = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    expected = -torch.log_softmax(logits, dim=1)[0, 1]
    assert torch.allclose(phrase_cross_entropy(logits, targets, torch.ones(1, 4)), expected)


def test_a_longer_phrase_shares_its_target_and_padding_is_no_candidate() -> None:
    # Tokens 0-1 are the phrase, token 2 another name, token 3 padding with a large logit.
    logits = torch.tensor([[2.0, 1.0, 0.0, 50.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    log_probs = torch.log_softmax(logits[:, :3], dim=1)[0]
    expected = -(log_probs[0] + log_probs[1]) / 2
    assert torch.allclose(phrase_cross_entropy(logits, targets, mask), expected)


def test_anchors_sum_and_rows_without_tokens_are_left_out() -> None:
    logits = torch.tensor([[0.0, 0.0], [4.0, 0.0], [9.0, -9.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # the last phrase was cut off
    expected = math.log(2.0) + (4.0 + math.log1p(math.exp(-4.0)))
    value = phrase_cross_entropy(logits, targets, torch.ones(3, 2))
    assert math.isclose(float(value), expected, rel_tol=1e-6)


def test_no_positive_anchor_gives_zero_with_a_gradient_path() -> None:
    logits = torch.zeros(0, 5, requires_grad=True)
    value = phrase_cross_entropy(logits, torch.zeros(0, 5), torch.ones(0, 5))
    assert float(value) == 0.0
    value.backward()  # the step's backward pass still runs


def test_the_gradient_lowers_the_other_names() -> None:
    logits = torch.tensor([[1.0, 1.0, 1.0]], requires_grad=True)
    phrase_cross_entropy(logits, torch.tensor([[1.0, 0.0, 0.0]]), torch.ones(1, 3)).backward()
    assert logits.grad[0, 0] < 0 and logits.grad[0, 1] > 0 and logits.grad[0, 2] > 0


def _config(shapes, directory, loss: dict | None = None, **sections) -> TrainConfig:
    config = tiny_config(shapes, directory, **sections)
    config["loss"] = dict(loss or {})
    return TrainConfig.from_dict(config)


def test_off_by_default_and_named_and_logged_when_on(shapes_64, tmp_path) -> None:
    assert "phrase_ce" not in Trainer(_config(shapes_64, tmp_path / "off")).terms
    config = _config(shapes_64, tmp_path / "run", loss={"phrase_ce": 0.5},
                     train={"max_steps": 2, "ema_decay": None})
    trainer = Trainer(config)
    assert trainer.terms == ("token", "box", "centerness", "phrase_ce")
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(row["phrase_ce"]) and row["phrase_ce"] > 0 for row in rows)
    assert all(abs(row["loss"] - sum(w * row[k] for k, w in trainer.loss_weights.items())) < 1e-6 for row in rows)


def test_it_decreases_on_a_repeated_batch(shapes_64, tmp_path) -> None:
    config = _config(shapes_64, tmp_path / "run", loss={"phrase_ce": 1.0},
                     model={"overrides": {"text": {"dropout": 0.0},
                                          "head": {"fusion_dropout": 0.0, "fusion_drop_path": 0.0}}},
                     optim={"lr": 2e-3, "warmup_steps": 0}, train={"max_steps": 20, "ema_decay": None})
    trainer = Trainer(config)
    batch = trainer.collator([trainer.dataset[i] for i in range(2)])
    history = [trainer.train_step([batch])[0]["phrase_ce"] for _ in range(8)]
    assert history[-1] < history[0], [round(v, 4) for v in history]


def test_a_negative_weight_is_named() -> None:
    with pytest.raises(TrainConfigError, match="loss.phrase_ce is a weight"):
        TrainConfig.from_dict({"loss": {"phrase_ce": -1.0}})
