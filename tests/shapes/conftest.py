"""A small copy of every shapes split, generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from glip.shapes.generate import generate_split
from glip.shapes.vocabulary import SPLITS

IMAGES_PER_SPLIT = {name: 12 for name in SPLITS} | {"ground-train": 40, "attributes": 20, "attributes-train": 20}


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    for split, count in IMAGES_PER_SPLIT.items():
        generate_split(root, split, count, seed=0, image_size=160 if split == "det-test" else 320)
    return root
