"""Fixtures of the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthetic_shapes import make_shapes_dataset


@pytest.fixture(scope="session")
def shapes_64(tmp_path_factory) -> Path:
    """Eight 64x64 images with one or two shapes; returns the COCO JSON path."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes64"), num_images=8, size=64, seed=0)
