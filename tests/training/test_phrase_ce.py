"""The phrase cross-entropy term: its value on hand-computed cases, what it leaves out, and the
trainer's handling (named, logged, off by default, trains the names apart)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from synthetic_shapes import tiny_config
from glip.training.loss import phrase_cross_entropy, phrase_groups
from glip.training.train_config import TrainConfig, TrainConfigError
from glip.training.trainer import Trainer


def _each_token(mask: torch.Tensor) -> torch.Tensor:
    """Every valid token its own candidate (the "tokens" softmax), -1 on padding."""
    return torch.where(mask > 0, torch.arange(mask.shape[-1]).expand_as(mask), -1)


def test_a_one_token_phrase_is_softmax_cross_entropy() -> None:
    logits = torch.tensor([[1.0, 3.0, -1.0, 0.5]])
    targets = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    expected = -torch.log_softmax(logits, dim=1)[0, 1]
    assert torch.allclose(phrase_cross_entropy(logits, targets, _each_token(torch.ones(1, 4))), expected)


def test_over_tokens_a_longer_phrase_shares_its_target_and_padding_is_no_candidate() -> None:
    # Tokens 0-1 are the phrase, token 2 another name, token 3 padding with a large logit.
    logits = torch.tensor([[2.0, 1.0, 0.0, 50.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    log_probs = torch.log_softmax(logits[:, :3], dim=1)[0]
    expected = -(log_probs[0] + log_probs[1]) / 2
    groups = _each_token(torch.tensor([[1, 1, 1, 0]]))
    assert torch.allclose(phrase_cross_entropy(logits, targets, groups), expected)


def test_over_phrases_a_longer_phrase_is_one_candidate_at_its_mean_logit() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, 50.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    groups = torch.tensor([[0, 0, 1, -1]])
    expected = -torch.log_softmax(torch.tensor([1.5, 0.0]), dim=0)[0]
    assert torch.allclose(phrase_cross_entropy(logits, targets, groups), expected)


def test_over_phrases_a_three_piece_name_and_a_one_piece_name_compete_evenly() -> None:
    # "he ##xa ##gon" (tokens 0-2) against "circle" (token 3), every logit equal: an even choice
    # over phrases (log 2 for either object), but not over tokens, where the circle costs log 4
    # and the hexagon more (its target is split over three pieces of 1/4 each).
    logits = torch.zeros(2, 4)
    targets = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    by_phrase = torch.tensor([[0, 0, 0, 1]] * 2)
    assert math.isclose(float(phrase_cross_entropy(logits, targets, by_phrase)), 2 * math.log(2.0), rel_tol=1e-6)
    by_token = _each_token(torch.ones(2, 4))
    assert math.isclose(float(phrase_cross_entropy(logits, targets, by_token)), 2 * math.log(4.0), rel_tol=1e-6)


def test_phrase_groups_of_a_detection_prompt_and_of_a_grounding_prompt() -> None:
    mask = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0])  # [CLS] he xa gon circle [SEP] pad pad
    detection = {"token_labels": torch.tensor([-1, 7, 7, 7, 3, -1, -1, -1]),
                 "positive_map": torch.tensor([[0, 0, 0, 0, 1, 0, 0, 0]]).float()}  # only a circle boxed
    groups = phrase_groups(detection, mask)
    assert groups[1] == groups[2] == groups[3] != groups[4]  # the unboxed hexagon is still one candidate
    assert groups[6:].tolist() == [-1, -1]
    assert sorted(groups[:6].unique().tolist()) == [0, 1, 2, 3]  # two names, [CLS], [SEP]
    grounding = {"positive_map": torch.tensor([[0, 1, 1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]]).float()}
    groups = phrase_groups(grounding, mask)
    assert groups[1] == groups[2] and len({int(g) for g in groups[[0, 1, 3, 4, 5]]}) == 5


def test_anchors_sum_and_rows_without_tokens_are_left_out() -> None:
    logits = torch.tensor([[0.0, 0.0], [4.0, 0.0], [9.0, -9.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # the last phrase was cut off
    expected = math.log(2.0) + (4.0 + math.log1p(math.exp(-4.0)))
    value = phrase_cross_entropy(logits, targets, _each_token(torch.ones(3, 2)))
    assert math.isclose(float(value), expected, rel_tol=1e-6)


def test_no_positive_anchor_gives_zero_with_a_gradient_path() -> None:
    logits = torch.zeros(0, 5, requires_grad=True)
    value = phrase_cross_entropy(logits, torch.zeros(0, 5), torch.zeros(0, 5, dtype=torch.int64))
    assert float(value) == 0.0
    value.backward()  # the step's backward pass still runs


def test_the_gradient_lowers_the_other_names_and_padding_gets_none() -> None:
    logits = torch.tensor([[1.0, 1.0, 1.0, 9.0]], requires_grad=True)
    phrase_cross_entropy(logits, torch.tensor([[1.0, 1.0, 0.0, 0.0]]), torch.tensor([[0, 0, 1, -1]])).backward()
    grad = logits.grad[0]
    assert grad[0] < 0 and grad[1] < 0 and grad[2] > 0 and grad[3] == 0 and torch.isfinite(grad).all()


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


@pytest.mark.parametrize("candidates", ["phrases", "tokens"])
def test_it_decreases_on_a_repeated_batch(shapes_64, tmp_path, candidates) -> None:
    config = _config(shapes_64, tmp_path / "run", loss={"phrase_ce": 1.0, "phrase_ce_candidates": candidates},
                     model={"overrides": {"text": {"dropout": 0.0},
                                          "head": {"fusion_dropout": 0.0, "fusion_drop_path": 0.0}}},
                     optim={"lr": 2e-3, "warmup_steps": 0}, train={"max_steps": 20, "ema_decay": None})
    trainer = Trainer(config)
    batch = trainer.collator([trainer.dataset[i] for i in range(2)])
    history = [trainer.train_step([batch])[0]["phrase_ce"] for _ in range(8)]
    assert history[-1] < history[0], [round(v, 4) for v in history]


def test_a_negative_weight_and_an_unknown_candidate_kind_are_named() -> None:
    with pytest.raises(TrainConfigError, match="loss.phrase_ce is a weight"):
        TrainConfig.from_dict({"loss": {"phrase_ce": -1.0}})
    with pytest.raises(TrainConfigError, match="loss.phrase_ce_candidates must be one of phrases, tokens"):
        TrainConfig.from_dict({"loss": {"phrase_ce": 1.0, "phrase_ce_candidates": "words"}})
