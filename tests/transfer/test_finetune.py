"""glip finetune on a tiny random model: what each mode trains, what it writes, and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from glip.checkpoint import load_glip
from glip.transfer.finetune import FinetuneConfig, finetune
from glip.transfer.modes import LINEAR_PROBE_PREFIXES
from glip.transfer.task import TaskError


def _config(base_weights, task_train, task_val, tmp_path, mode, **changes) -> FinetuneConfig:
    options = dict(train=str(task_train), val=str(task_val), weights=str(base_weights), mode=mode,
                   train_images=str(task_train.parent / "images"), val_images=str(task_val.parent / "images"),
                   out=str(tmp_path / mode), steps=3, batch_size=2, device="cpu", progress=False)
    return FinetuneConfig(**{**options, **changes})


def _applied_state(base_weights, adapter_path) -> dict[str, torch.Tensor]:
    """The base model's weights with the adapter's tensors written over them."""
    state = {k: v.clone() for k, v in load_glip(base_weights).state_dict().items()}
    state.update(load_file(str(adapter_path)))
    return state


def test_prompt_tuning_changes_only_the_prompt(base_weights, task_train, task_val, tmp_path):
    result = finetune(_config(base_weights, task_train, task_val, tmp_path, "prompt", lr=0.05))
    tensors = load_file(result["file"])
    assert list(tensors) == ["prompt_embedding"]
    assert tensors["prompt_embedding"].abs().max() > 0  # it learned something from zero
    assert result["trainable_parameters"] == tensors["prompt_embedding"].numel()
    # every other weight is bit-identical to the base after the training steps: the run's last
    # checkpoint holds the whole trained model
    checkpoint = torch.load(tmp_path / "prompt" / "checkpoints" / "step_00000003.pt", weights_only=False)
    base = load_glip(base_weights).state_dict()
    trained = checkpoint["model"]
    assert set(trained) == set(base) | {"prompt_embedding"}
    for name, value in base.items():
        assert torch.equal(trained[name], value), name
    assert set(result["metrics"]) == {"AP", "AP50", "AP75"}
    assert result["prompt"] == "circle. square. triangle."


def test_linear_probe_changes_only_the_listed_parameters(base_weights, task_train, task_val, tmp_path):
    result = finetune(_config(base_weights, task_train, task_val, tmp_path, "linear"))
    checkpoint = torch.load(tmp_path / "linear" / "checkpoints" / "step_00000003.pt", weights_only=False)
    base = load_glip(base_weights).state_dict()
    changed = {name for name, value in base.items() if not torch.equal(checkpoint["model"][name], value)}
    listed = {name for name in base if any(name == p or name.startswith(p + ".") for p in LINEAR_PROBE_PREFIXES)}
    assert changed and changed <= listed
    assert set(load_file(result["file"])) == listed  # the adapter holds exactly the probe's tensors
    assert result["trainable_parameters"] == sum(base[name].numel() for name in listed)


def test_full_mode_writes_a_model_and_its_task(base_weights, task_train, task_val, tmp_path):
    result = finetune(_config(base_weights, task_train, task_val, tmp_path, "full", steps=2))
    tuned = load_glip(result["file"]).state_dict()
    base = load_glip(base_weights).state_dict()
    assert any(not torch.equal(tuned[name], base[name]) for name in base if name.startswith("backbone."))
    task = json.loads((tmp_path / "full" / "task.json").read_text())
    assert [c["name"] for c in task["categories"]] == ["circle", "square", "triangle"]
    assert json.loads((tmp_path / "full" / "result.json").read_text())["mode"] == "full"


def test_prompt_overrides_shape_the_task_prompt(base_weights, task_train, task_val, tmp_path):
    overrides = tmp_path / "prompts.yaml"
    overrides.write_text("circle: a round circle\ntriangle: {phrase: triangle, suffix: ' with three corners'}\n")
    result = finetune(_config(base_weights, task_train, task_val, tmp_path, "prompt", steps=1,
                              prompt_overrides=str(overrides)))
    assert result["prompt"] == "a round circle. square. triangle with three corners."


def test_bad_input_is_refused_clearly(base_weights, task_train, task_val, tmp_path):
    with pytest.raises(ValueError, match="fewer than shots=50"):
        finetune(_config(base_weights, task_train, task_val, tmp_path, "prompt", shots=50))
    other = json.loads(task_val.read_text())
    other["categories"][0]["name"] = "hexagon"
    mismatched = task_val.parent / "renamed.json"
    mismatched.write_text(json.dumps(other))
    with pytest.raises(TaskError, match="differ from the training task"):
        finetune(_config(base_weights, task_train, mismatched, tmp_path, "prompt"))
    empty = json.loads(task_train.read_text())
    empty["images"], empty["annotations"] = [], []
    empty_file = task_train.parent / "empty.json"
    empty_file.write_text(json.dumps(empty))
    with pytest.raises(ValueError, match="is empty .no images or no boxes"):
        finetune(_config(base_weights, empty_file, task_val, tmp_path, "prompt"))
    with pytest.raises(ValueError, match="unknown mode"):
        finetune(_config(base_weights, task_train, task_val, tmp_path, "adapter"))
