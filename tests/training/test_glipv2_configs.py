"""The glipv2-nano configs (the model and its two ablations): each parses, opens with what it starts
from and what it produces, keeps glip-nano's architecture and the self-training control's data, learning
rates and seed (300 steps), and builds its model and loss (on glip-tiny, the tiny path) without training."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from glip.config import GLIPConfig, MaskHeadConfig, PretrainingConfig
from glip.training.starting_model import build_model, build_model_config
from glip.training.train_config import TrainConfig, load_train_config
from glip.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("glipv2-nano*.yaml"))
SHIPPED = "src/glip/weights/glip-nano.safetensors"
GROUNDING_TERMS = {"token", "box", "centerness"}
TERMS = {"glipv2-nano": GROUNDING_TERMS | {"inter_image", "mlm", "mask"},
         "glipv2-nano-no-inter": GROUNDING_TERMS | {"mlm", "mask"},
         "glipv2-nano-no-mlm": GROUNDING_TERMS | {"inter_image", "mask"}}
ids = [path.stem for path in CONFIGS]


def test_the_model_and_its_two_ablations() -> None:
    assert sorted(path.stem for path in CONFIGS) == sorted(TERMS)


@pytest.mark.parametrize("path", CONFIGS, ids=ids)
def test_config_parses_and_keeps_the_architecture_data_and_schedule(path: Path) -> None:
    config = load_train_config(path)
    first, second = path.read_text().splitlines()[:2]
    assert first.startswith(f"# Starts from: {SHIPPED} ") and second.startswith(f"# Produces: {config.output.dir}/")
    assert config.model.init_from == SHIPPED and config.model.weights is None  # new heads: init_from
    assert config.output.dir == f"runs/{path.stem}"
    assert set(config.loss_weights()) == TERMS[path.stem]
    assert all(config.loss_weights()[term] == 1.0 for term in TERMS[path.stem] - {"box"})
    # the self-training control's data, input sizes, learning rates and seed; 300 steps instead of 500
    control = load_train_config(ROOT / "configs" / "selftrain-control.yaml")
    assert (config.data, config.input, config.optim) == (control.data, control.input, control.optim)
    assert config.train == dataclasses.replace(control.train, max_steps=300)
    assert not [d for d in config.data.datasets if d.type == "pseudo"]
    # glip-nano's architecture, so that init_from fills every tensor of the detector
    built = build_model_config(config.model)
    shipped = GLIPConfig.from_dict(json.loads((ROOT / SHIPPED).with_suffix(".json").read_text()))
    assert dataclasses.replace(built, pretraining=PretrainingConfig(), mask_head=MaskHeadConfig()) == shipped
    assert built.mask_head.enabled
    assert (built.pretraining.inter_image, built.pretraining.mlm) == ("inter_image" in TERMS[path.stem],
                                                                      "mlm" in TERMS[path.stem])


def _tiny(config: TrainConfig, annotations: Path, output: Path) -> TrainConfig:
    """The config on glip-tiny at 64 pixels, on the synthetic shapes, no starting weights."""
    data = config.to_dict()
    data["model"] = {"config": "glip-tiny",
                     "overrides": {**config.model.overrides, "input": {"min_size": 64, "max_size": 64}}}
    data["data"] = {"datasets": [{"type": "coco", "annotations": str(annotations),
                                  "images": str(annotations.parent / "images")}]}
    data["input"] = {**data["input"], "min_sizes": [64], "max_size": 64}
    data["train"] = {**data["train"], "batch_size": 2, "device": "cpu"}
    data["output"] = {**data["output"], "dir": str(output), "tensorboard": False, "progress": False}
    return TrainConfig.from_dict(data)


@pytest.mark.parametrize("path", CONFIGS, ids=ids)
def test_builds_its_model_and_loss_on_the_tiny_path(path: Path, shapes_64: Path, tmp_path: Path) -> None:
    config = _tiny(load_train_config(path), shapes_64, tmp_path / "run")
    torch.manual_seed(0)
    model = build_model(config.model).model
    trainer = Trainer(config, model=model)
    assert set(trainer.terms) == TERMS[path.stem]
    heads = model.pretraining_heads
    assert model.mask_head is not None and trainer.mask_loss is not None
    assert (heads.inter_image is not None) == ("inter_image" in TERMS[path.stem]) == (trainer.inter_image_loss
                                                                                       is not None)
    assert (heads.mlm is not None) == ("mlm" in TERMS[path.stem]) == (trainer.mlm_vocabulary is not None)
    if path.stem == "glipv2-nano":  # one forward of the full loss (no step): every term is there and finite
        batch = trainer.collator([trainer.dataset[i] for i in range(2)])
        with torch.no_grad():
            terms = trainer.loss_terms(batch)
        assert set(terms) == TERMS[path.stem] and all(math.isfinite(float(v)) for v in terms.values())
    assert not (tmp_path / "run" / "model.safetensors").exists()  # nothing was trained
