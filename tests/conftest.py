"""Shared test fixtures: small models. (Golden reference data: ``support.require_reference``.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random glip-tiny model saved in our format (seeded, so tests are repeatable)."""
    from glip.checkpoint import save_glip
    from glip.config import get_config
    from glip.modeling.glip import GLIP

    torch.manual_seed(0)
    model = GLIP(get_config("glip-tiny")).eval()
    # Give the alignment a spread so scores are not all ~0.5.
    with torch.no_grad():
        model.head.bias0.fill_(0.0)
    return save_glip(model, tmp_path_factory.mktemp("tiny") / "glip-tiny.safetensors")
