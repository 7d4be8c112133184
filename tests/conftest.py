"""Shared test fixtures: the golden reference directory and small models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support import reference_dir


@pytest.fixture(scope="session")
def reference_root() -> Path:
    root = reference_dir()
    if not root.is_dir():
        pytest.skip(f"golden reference data not found at {root} (set GLIP_REFERENCE_DIR)")
    return root


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
