"""Fixtures of the serving tests: a tiny random model at 64 px behind a predictor, with one adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the serving tests need the serve extra: pip install -e '.[serve,test]'")

SCENE = Path(__file__).resolve().parent / "scene.png"  # a shapes-world scene: star, square, hexagon, cross
CLASSES = ["circle", "square", "star"]


@pytest.fixture(scope="session")
def predictor():
    """A random glip-tiny (64 px input) with spread scores, and an adapter named 'task'."""
    from glip.config import GLIPConfig, get_config
    from glip.modeling.glip import GLIP
    from glip.predictor import GLIPPredictor
    from glip.prompts import build_class_prompt
    from glip.transfer.adapter import Adapter, AdapterCategory, model_fingerprint

    torch.manual_seed(0)
    data = get_config("glip-tiny").to_dict()
    data["input"] = {**data["input"], "min_size": 64, "max_size": 64}
    model = GLIP(GLIPConfig.from_dict(data)).eval()
    with torch.no_grad():
        model.head.bias0.fill_(0.0)  # scores spread around 0.5 instead of the 0.01 prior: detections to compare
    predictor = GLIPPredictor(model, device="cpu")
    names = ["triangle", "cross"]
    predictor.add_adapter(Adapter(
        tensors={"head.bias0": torch.tensor([0.5])}, prompt=build_class_prompt(names),
        categories=[AdapterCategory(i + 1, n) for i, n in enumerate(names)], mode="linear",
        base_fingerprint=model_fingerprint(model), name="task"))
    return predictor


@pytest.fixture()
def make_client(predictor):
    """``make_client(**ServeConfig fields)`` -> a started TestClient (closed after the test)."""
    from fastapi.testclient import TestClient

    from glip.serving.app import create_app
    from glip.serving.config import ServeConfig

    clients = []

    def make(**fields):
        client = TestClient(create_app(predictor, ServeConfig(**fields)))
        client.__enter__()  # runs the lifespan: starts the batcher
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
