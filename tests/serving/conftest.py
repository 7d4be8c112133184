"""Fixtures of the serving tests: a tiny random model at 64 px behind a predictor, with one adapter."""

from __future__ import annotations

import dataclasses

import pytest
import torch

@pytest.fixture(scope="session")
def predictor(tiny_checkpoint):
    """The random glip-tiny of the root conftest (spread scores) at a 64 px input, with an adapter
    named 'task'."""
    from glip.checkpoint import load_glip
    from glip.predictor import GLIPPredictor
    from glip.prompts import build_class_prompt
    from glip.adapters import Adapter, AdapterCategory, model_fingerprint

    model = load_glip(tiny_checkpoint)
    model.config.input = dataclasses.replace(model.config.input, min_size=64, max_size=64)  # fast on a CPU
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


@pytest.fixture(scope="session")
def masked_predictor(tmp_path_factory):
    """A random glip-tiny with a mask head (`masked_model.save_masked_glip`) at a 64 px input."""
    from glip.checkpoint import load_glip
    from glip.predictor import GLIPPredictor
    from masked_model import save_masked_glip

    model = load_glip(save_masked_glip(tmp_path_factory.mktemp("masked") / "glip-tiny-masks.safetensors"))
    model.config.input = dataclasses.replace(model.config.input, min_size=64, max_size=64)  # fast on a CPU
    return GLIPPredictor(model, device="cpu")


@pytest.fixture()
def make_masked_client(masked_predictor):
    """``make_masked_client(**ServeConfig fields)`` -> a started TestClient of the model with a mask head."""
    from fastapi.testclient import TestClient

    from glip.serving.app import create_app
    from glip.serving.config import ServeConfig

    clients = []

    def make(**fields):
        client = TestClient(create_app(masked_predictor, ServeConfig(**fields)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
