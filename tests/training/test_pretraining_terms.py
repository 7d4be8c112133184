"""GLIPv2's pre-training terms in the trainer: named and logged when on, off by default with the
loss exactly as before, a clear error when the model lacks a head."""

from __future__ import annotations

import json
import math

import pytest
import torch

from synthetic_shapes import assert_grounding_terms_unchanged, tiny_config
from glip.training import checkpointing
from glip.training.train_config import TrainConfig, TrainConfigError
from glip.training.trainer import NonFiniteLossError, Trainer

NO_DROPOUT = {"text": {"dropout": 0.0}, "head": {"fusion_dropout": 0.0, "fusion_drop_path": 0.0}}
HEADS = {"pretraining": {"inter_image": True, "mlm": True}}
# Shape prompts are short: mask any real token, often, so that MLM has tokens in every batch.
BOTH_ON = {"inter_image": 1.0, "mlm": 1.0, "mlm_only_positive_spans": False, "mlm_probability": 0.5}


def _config(shapes, directory, loss: dict | None = None, **sections) -> TrainConfig:
    config = tiny_config(shapes, directory, **sections)
    config["loss"] = dict(loss or {})
    return TrainConfig.from_dict(config)


def _batch(trainer: Trainer, count: int = 2):
    return trainer.collator([trainer.dataset[i] for i in range(count)])


def test_both_terms_train_and_are_logged_by_name(shapes_64, tmp_path) -> None:
    config = _config(shapes_64, tmp_path / "run", BOTH_ON, model={"overrides": HEADS},
                     train={"max_steps": 3, "ema_decay": None})
    trainer = Trainer(config)
    assert trainer.terms == ("token", "box", "centerness", "inter_image", "mlm")
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("inter_image", "mlm", "token", "loss"))
        assert abs(row["loss"] - sum(w * row[k] for k, w in trainer.loss_weights.items())) < 1e-6
    assert (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")[3:8] == [
        "token", "box", "centerness", "inter_image", "mlm"]
    # The heads are model parameters: in the checkpoint and in the exported model.
    assert any(k.startswith("pretraining_heads.inter_image.") for k in trainer.model.state_dict())


def test_the_terms_decrease_on_a_repeated_batch(shapes_64, tmp_path) -> None:
    config = _config(shapes_64, tmp_path / "run", BOTH_ON, model={"overrides": {**HEADS, **NO_DROPOUT}},
                     optim={"lr": 2e-3, "language_lr": 2e-3, "warmup_steps": 0},
                     train={"max_steps": 20, "ema_decay": None})
    trainer = Trainer(config)
    batch = _batch(trainer)
    history = []
    for _ in range(8):
        # The same masking every step (the step number picks the generator), so MLM sees one task.
        values, taken = trainer.train_step([batch])
        assert taken
        history.append(values)
    for key in ("inter_image", "mlm"):
        assert history[-1][key] < history[0][key], [round(v[key], 4) for v in history]


def test_weights_zero_leave_the_loss_as_before(shapes_64, tmp_path) -> None:
    config = _config(shapes_64, tmp_path / "run", model={"overrides": NO_DROPOUT})
    assert (config.loss.inter_image, config.loss.mlm) == (0.0, 0.0)
    trainer = Trainer(config)
    assert trainer.terms == ("token", "box", "centerness") and trainer.model.pretraining_heads is None
    assert "pretraining" not in trainer.model.config.to_dict()  # model files are written as before
    assert not any("pretraining" in name for name in trainer.model.state_dict())
    batch = _batch(trainer)
    assert_grounding_terms_unchanged(trainer, batch)


def test_a_weight_without_its_head_is_a_one_line_error(shapes_64, tmp_path) -> None:
    for term, head in (("inter_image", "inter_image"), ("mlm", "mlm")):
        config = _config(shapes_64, tmp_path / term, {term: 0.5})
        with pytest.raises(ValueError) as raised:
            Trainer(config)
        message = str(raised.value)
        assert f"loss.{term} = 0.5" in message and f"pretraining: {{{head}: true}}" in message and "\n" not in message


@pytest.mark.parametrize("override, fragment", [
    ({"mlm": -1.0}, "loss.inter_image and loss.mlm are weights"),
    ({"mlm_probability": 1.0}, "loss.mlm_probability must be in (0, 1)"),
    ({"inter_image_max_positives": 0}, "loss.inter_image_max_positives must be >= 1"),
])
def test_bad_settings_are_named(override, fragment) -> None:
    with pytest.raises(TrainConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_dict({"loss": override})


def test_a_non_finite_pre_training_term_stops_the_run(shapes_64, tmp_path) -> None:
    config = _config(shapes_64, tmp_path / "run", BOTH_ON, model={"overrides": HEADS},
                     train={"max_steps": 4}, output={"checkpoint_every": 100})
    trainer = Trainer(config)
    compute, calls = trainer.inter_image_loss, []

    def poisoned(*args):
        calls.append(1)
        value = compute(*args)
        return value * float("nan") if len(calls) == 2 else value

    trainer.inter_image_loss = poisoned
    with pytest.raises(NonFiniteLossError, match=r"at step 2 \(.*inter_image nan"):
        trainer.fit()


def test_resume_with_the_pre_training_terms_equals_a_straight_run(shapes_64, tmp_path) -> None:
    # Masking and the draw of positives depend on (seed, step, rank, micro-batch), not on the RNG.
    config = _config(shapes_64, tmp_path / "run", {**BOTH_ON, "inter_image_max_positives": 3},
                     model={"overrides": HEADS}, train={"max_steps": 4}, output={"checkpoint_every": 2})
    straight = Trainer(config)
    straight.fit(export=False)
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    checkpoints = checkpointing.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [step for step, _ in checkpoints] == [2, 4]
    checkpoints[-1][1].unlink()  # as if the run had stopped after step 2
    resumed = Trainer(config)
    resumed.fit(resume=True, export=False)
    torch.testing.assert_close(resumed.model.state_dict(), straight.model.state_dict(), rtol=1e-5, atol=1e-6)
    again = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    for before, after in zip(map(json.loads, rows), map(json.loads, again)):
        assert after["step"] == before["step"]
        assert after["inter_image"] == pytest.approx(before["inter_image"], rel=1e-5)
        assert after["mlm"] == pytest.approx(before["mlm"], rel=1e-5)
