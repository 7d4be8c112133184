"""Fixtures of the evaluation tests: hand-built COCO files and a tiny model on tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_helpers import coco
from support import save_small_glip
from PIL import Image


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """glip-tiny with 64-pixel inputs and a zero alignment bias (scores spread around 0.5)."""
    return save_small_glip(tmp_path_factory.mktemp("small") / "glip-small.safetensors")


@pytest.fixture(scope="session")
def small_predictor(small_checkpoint):
    from glip.predictor import GLIPPredictor

    return GLIPPredictor.from_pretrained(small_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Four 80x60 noise images, 1.png .. 4.png."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(1, 5):
        Image.fromarray(rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


@pytest.fixture(scope="session")
def detection_file(image_folder) -> Path:
    """COCO ground truth for the four images (two boxes each, categories circle/square/star)."""
    data = coco([1, 2, 3, 4], [(i, 1 + (i + k) % 3, [5 + 20 * k, 8, 30, 25]) for i in range(1, 5) for k in range(2)],
                [(1, "circle"), (2, "square"), (3, "star")], size=(80, 60))
    path = image_folder / "detection.json"
    path.write_text(json.dumps(data))
    return path
