"""Adapters: file round trip, refusal on another base model, switching tasks on one predictor."""

from __future__ import annotations

import pytest
import torch

from glip.adapters import (Adapter, AdapterCategory, AdapterError, AdapterSwitch, load_adapter, model_fingerprint,
                           save_adapter)
from glip.checkpoint import load_glip
from glip.predictor import GLIPPredictor
from glip.prompts import build_class_prompt
# The transfer tests' base models and task data serve the adapter tests too.
from transfer.conftest import base_weights, other_weights, task_val  # noqa: F401


def _adapter(model, mode="prompt", names=("circle", "square")) -> Adapter:
    torch.manual_seed(3)
    if mode == "prompt":
        tensors = {"prompt_embedding": torch.randn(model.config.text.max_length, model.config.text.hidden_size)}
    else:
        tensors = {"head.bias0": torch.tensor([2.5]), "head.box_regression.bias": torch.randn(4)}
    return Adapter(tensors=tensors, prompt=build_class_prompt(list(names)),
                   categories=[AdapterCategory(i + 1, n) for i, n in enumerate(names)], mode=mode,
                   base_fingerprint=model_fingerprint(model), name=f"task-{mode}")


def test_round_trip(base_weights, tmp_path):
    model = load_glip(base_weights)
    adapter = _adapter(model)
    path = save_adapter(adapter, tmp_path / "task.safetensors")
    loaded = load_adapter(path)
    assert loaded.prompt == adapter.prompt and loaded.category_names == ["circle", "square"]
    assert loaded.base_fingerprint == adapter.base_fingerprint and loaded.mode == "prompt"
    assert torch.equal(loaded.tensors["prompt_embedding"], adapter.tensors["prompt_embedding"])
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_refused_on_another_base_model(base_weights, other_weights, tmp_path):
    path = save_adapter(_adapter(load_glip(base_weights)), tmp_path / "task.safetensors")
    predictor = GLIPPredictor(load_glip(other_weights), device="cpu")
    with pytest.raises(AdapterError, match="was tuned on base model .* but this model is"):
        predictor.add_adapter(path)
    GLIPPredictor(load_glip(base_weights), device="cpu").add_adapter(path)  # its own base accepts it


def test_fingerprint_ignores_file_format_but_not_weights(base_weights, other_weights):
    base = load_glip(base_weights)
    assert model_fingerprint(base) == model_fingerprint(load_glip(base_weights))
    assert model_fingerprint(base) != model_fingerprint(load_glip(other_weights))
    base.enable_prompt_embedding(8)
    assert model_fingerprint(base) == model_fingerprint(load_glip(base_weights))  # prompt embedding left out


def test_not_an_adapter(base_weights, tmp_path):
    with pytest.raises(AdapterError, match="not a glip adapter"):
        load_adapter(base_weights)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not safetensors")
    with pytest.raises(AdapterError, match="not a readable safetensors"):
        load_adapter(broken)
    with pytest.raises(AdapterError, match="does not exist"):
        load_adapter(tmp_path / "missing.safetensors")


def test_switching_tasks_restores_the_base_model(base_weights, task_val):
    model = load_glip(base_weights)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = GLIPPredictor(model, device="cpu")
    predictor.add_adapter(_adapter(model, "prompt"))
    predictor.add_adapter(_adapter(model, "linear"))
    image = next((task_val.parent / "images").glob("*.png"))
    base = predictor.detect(image, classes=["circle", "square"], threshold=0.0)[0]
    tuned_prompt = predictor.detect(image, threshold=0.0, adapter="task-prompt")[0]
    tuned_linear = predictor.detect(image, threshold=0.0, adapter="task-linear")[0]
    again = predictor.detect(image, classes=["circle", "square"], threshold=0.0)[0]
    scores = [[d.score for d in r.detections[:5]] for r in (base, tuned_prompt, tuned_linear)]
    assert scores[0] != scores[1] and scores[0] != scores[2] and scores[1] != scores[2]
    assert [d.score for d in again.detections] == [d.score for d in base.detections]
    assert model.prompt_embedding is None
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert tuned_prompt.phrases == ["circle", "square"]


def test_adapter_equals_its_weights_applied_by_hand(base_weights, task_val):
    model = load_glip(base_weights)
    adapter = _adapter(model, "linear")
    predictor = GLIPPredictor(model, device="cpu")
    predictor.add_adapter(adapter)
    image = next((task_val.parent / "images").glob("*.png"))
    through_adapter = predictor.detect(image, threshold=0.0, adapter=adapter.name)[0]
    by_hand = load_glip(base_weights)
    by_hand.load_state_dict({**by_hand.state_dict(), **adapter.tensors})
    direct = GLIPPredictor(by_hand, device="cpu").detect(image, classes=["circle", "square"], threshold=0.0)[0]
    assert through_adapter.detections and through_adapter.detections == direct.detections


def test_wrong_classes_or_unknown_adapter(base_weights, task_val):
    model = load_glip(base_weights)
    predictor = GLIPPredictor(model, device="cpu")
    predictor.add_adapter(_adapter(model))
    image = next((task_val.parent / "images").glob("*.png"))
    with pytest.raises(AdapterError, match="tuned for the categories"):
        predictor.detect(image, classes=["hexagon"], adapter="task-prompt")
    with pytest.raises(AdapterError, match="unknown adapter 'nope'"):
        predictor.detect(image, adapter="nope")


def test_switch_puts_base_values_back(base_weights):
    model = load_glip(base_weights)
    switch = AdapterSwitch(model)
    adapter = _adapter(model, "linear")
    with switch.applied(adapter):
        assert float(model.head.bias0.detach()) == 2.5
    assert float(model.head.bias0.detach()) != 2.5
