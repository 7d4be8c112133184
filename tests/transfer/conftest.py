"""Fixtures of the transfer tests: a tiny base model at 64 px and a few synthetic shape images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.synthetic_shapes import make_shapes_dataset


@pytest.fixture(scope="session")
def base_weights(tmp_path_factory) -> Path:
    """A random glip-tiny (64 px input) saved in our format: the base model of the tests."""
    from glip.checkpoint import save_glip
    from glip.config import GLIPConfig, get_config
    from glip.modeling.glip import GLIP

    torch.manual_seed(0)
    data = get_config("glip-tiny").to_dict()
    data["input"] = {**data["input"], "min_size": 64, "max_size": 64}
    model = GLIP(GLIPConfig.from_dict(data)).eval()
    with torch.no_grad():
        model.head.bias0.fill_(0.0)  # scores spread around 0.5 instead of the 0.01 prior: detections to compare
    return save_glip(model, tmp_path_factory.mktemp("base") / "base.safetensors")


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory, base_weights) -> Path:
    """The same architecture with other weights (another base model)."""
    from glip.checkpoint import load_glip, save_glip

    model = load_glip(base_weights)
    with torch.no_grad():
        model.head.bias0.add_(0.5)
    return save_glip(model, tmp_path_factory.mktemp("other") / "other.safetensors")


@pytest.fixture(scope="session")
def task_train(tmp_path_factory) -> Path:
    """Twelve 64x64 images of circles, squares and triangles (COCO JSON path)."""
    return make_shapes_dataset(tmp_path_factory.mktemp("task_train"), num_images=12, size=64, seed=1)


@pytest.fixture(scope="session")
def task_val(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("task_val"), num_images=4, size=64, seed=2)
