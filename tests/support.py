"""Paths shared by the tests (importable from every test directory: tests/ is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = REPO_ROOT / "tests" / "golden"


def reference_dir() -> Path:
    """The golden reference data: ``tests/golden`` unless GLIP_REFERENCE_DIR says otherwise."""
    return Path(os.environ.get("GLIP_REFERENCE_DIR") or GOLDEN_DIR)


def in_ci() -> bool:
    """True when the CI environment variable is set (``CI=true``, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_reference(*parts: str) -> Path:
    """``reference_dir() / parts`` (a file or folder), which the calling test cannot run without.

    The data ships with the repository, so a missing file fails the test under ``CI=true``; elsewhere
    (a partial copy of the sources) the test is skipped with the same message.
    """
    path = reference_dir().joinpath(*parts)
    if not path.exists():
        message = (f"golden reference data {path} is missing: restore tests/golden from the repository "
                   f"or point GLIP_REFERENCE_DIR at a reference folder")
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def save_small_glip(path: Path) -> Path:
    """A seeded glip-tiny with 64-96 pixel inputs and a zero alignment bias (scores spread around
    0.5), saved in our format at ``path``: the small model of the evaluation tests."""
    import dataclasses

    import torch

    from glip.checkpoint import save_glip
    from glip.config import get_config
    from glip.modeling.glip import GLIP

    config = get_config("glip-tiny")
    config = dataclasses.replace(config, input=dataclasses.replace(config.input, min_size=64, max_size=96))
    torch.manual_seed(0)
    model = GLIP(config).eval()
    with torch.no_grad():
        model.head.bias0.fill_(0.0)
    return save_glip(model, path)
