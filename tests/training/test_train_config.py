"""Training config: YAML, overrides, and clear errors."""

from __future__ import annotations

import pytest

from glip.training.train_config import TrainConfig, TrainConfigError, load_train_config


def test_defaults_are_the_official_recipe() -> None:
    config = TrainConfig()
    assert (config.optim.lr, config.optim.language_lr, config.optim.weight_decay) == (1e-4, 1e-5, 1e-4)
    assert config.optim.step_milestones == [0.67, 0.89] and config.optim.grad_clip == 1.0
    assert config.train.ema_decay == 0.999
    assert config.loss_weights() == {"token": 1.0, "box": 2.0, "centerness": 1.0}


def test_yaml_and_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "model: {config: glip-tiny}\n"
        "data:\n  datasets:\n    - {type: coco, annotations: a.json, images: imgs}\n"
        "optim: {lr: 2e-4}\n"  # YAML 1.1 reads this as a string; it must still become a float
        "train: {max_steps: 10}\n"
    )
    config = load_train_config(path, ["optim.lr=1e-3", "train.ema_decay=null", "train.freeze=[backbone]",
                                      "data.datasets.0.weight=2", "model.overrides.text.dropout=0.0",
                                      "input.min_sizes=[128, 160]", "output.dir=runs/x",
                                      "optim.lr_multipliers={head.visual_skip: 20}"])
    assert config.optim.lr == 1e-3 and isinstance(config.optim.lr, float)
    assert config.train.ema_decay is None and config.train.freeze == ["backbone"]
    assert config.data.datasets[0].weight == 2.0 and config.data.datasets[0].annotations == "a.json"
    assert config.model.overrides == {"text": {"dropout": 0.0}}
    assert config.input.min_sizes == [128, 160] and config.train.max_steps == 10
    assert config.optim.lr_multipliers == {"head.visual_skip": 20.0}
    assert isinstance(config.optim.lr_multipliers["head.visual_skip"], float)
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown key 'optim.lrr'.*valid: lr, language_lr"),
    ("optimizer.lr=1", "unknown key 'optimizer'.*valid: model, data"),
    ("train.max_steps=many", "train.max_steps: expected int"),
    ("train.amp=fp8", "train.amp must be one of off, bf16, fp16, auto"),
    ("optim.schedule=linear", "optim.schedule must be one of step, cosine"),
    ("train.batch_size", "not key=value"),
    ("optim.lr_multipliers={head: -1}", "optim.lr_multipliers factors must be positive"),
    ("optim.lr_multipliers=[head]", "optim.lr_multipliers: expected a mapping"),
    ("data.datasets.3.weight=1", "needs an index below 0"),
])
def test_bad_overrides_are_named(override: str, message: str) -> None:
    with pytest.raises(TrainConfigError, match=message):
        load_train_config(None, [override])


def test_unknown_yaml_key_lists_valid_ones(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train: {max_step: 5}\n")
    with pytest.raises(TrainConfigError, match=r"unknown key max_step in 'train'; valid: max_steps"):
        load_train_config(path)
    with pytest.raises(TrainConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.yaml")


def test_weights_and_init_from_are_exclusive() -> None:
    config = load_train_config(None, ["model.init_from=a.safetensors"])
    assert config.model.init_from == "a.safetensors" and config.model.weights is None
    with pytest.raises(TrainConfigError, match="exclusive"):
        load_train_config(None, ["model.init_from=a.safetensors", "model.weights=b.safetensors"])
