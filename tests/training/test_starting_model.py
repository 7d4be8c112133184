"""The model a run starts from: built once, its initial weights read once, and which parameters
came from a source the config names."""

from __future__ import annotations

import json

import pytest
import torch

from glip.checkpoint import save_glip
from glip.config import get_config
from glip.modeling import GLIP
from glip.modeling.text_encoder import TextEncoder
from glip.training.starting_model import build_model, build_model_config
from glip.training.train_config import ModelSection


@pytest.fixture()
def built_models(monkeypatch) -> list[str]:
    """The names of the configs of every GLIP built from now on."""
    built: list[str] = []
    original = GLIP.__init__

    def counting(self, config):
        built.append(config.name)
        original(self, config)

    monkeypatch.setattr(GLIP, "__init__", counting)
    return built


def test_weights_build_one_model_and_every_parameter_is_sourced(tmp_path, built_models) -> None:
    torch.manual_seed(1)
    saved = GLIP(get_config("glip-tiny"))
    path = save_glip(saved, tmp_path / "start.safetensors")
    built_models.clear()
    start = build_model(ModelSection(config="glip-tiny", weights=str(path), overrides={"text": {"dropout": 0.0}}))
    assert built_models == ["glip-tiny"]
    assert start.model.config.text.dropout == 0.0  # the overrides apply to the one model built
    assert all(torch.equal(value, saved.state_dict()[key]) for key, value in start.model.state_dict().items())
    assert start.sourced == {name for name, _ in start.model.named_parameters()}
    assert start.sources == f"model.weights={path}"


def test_random_init_is_sourced_nowhere(built_models) -> None:
    start = build_model(ModelSection(config="glip-tiny"))
    assert built_models == ["glip-tiny"] and start.sourced == frozenset() and start.sources == ""


def test_pretrained_text_encoder_is_sourced(monkeypatch) -> None:
    loaded = []
    monkeypatch.setattr(TextEncoder, "load_minilm", lambda self: loaded.append(1))
    start = build_model(ModelSection(config="glip-tiny", overrides={"text": {"pretrained": "minilm"}}))
    assert loaded == [1]
    text = {name for name, _ in start.model.named_parameters() if name.startswith("text_encoder.")}
    assert text and start.sourced == text and start.sources == "text.pretrained=minilm"


def test_config_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(get_config("glip-tiny-nofusion").to_dict()))
    config = build_model_config(ModelSection(config=str(path), overrides={"head": {"num_blocks": 1}}))
    assert config.name == "glip-tiny-nofusion" and config.head.num_blocks == 1
    with pytest.raises(FileNotFoundError, match="model.config: .*missing.json does not exist"):
        build_model_config(ModelSection(config=str(tmp_path / "missing.json")))
