"""Synthetic detection data for the trainer tests (coloured circles, squares and triangles drawn
with PIL, written as COCO detection JSON) and a tiny training config on it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

CATEGORIES = ["circle", "square", "triangle"]
COLOURS = [(220, 40, 40), (40, 160, 60), (50, 80, 220), (230, 180, 30)]


def _draw(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = box
    if kind == "circle":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=colour)
    elif kind == "square":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=colour)
    else:
        draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=colour)


def _place(rng: random.Random, size: int, taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    for _ in range(50):
        side = rng.randint(size // 4, size // 2)
        x1, y1 = rng.randint(0, size - side), rng.randint(0, size - side)
        box = (x1, y1, x1 + side, y1 + side)
        if all(box[2] <= t[0] or box[0] >= t[2] or box[3] <= t[1] or box[1] >= t[3] for t in taken):
            return box
    return None


def make_shapes_dataset(directory: Path, num_images: int = 6, size: int = 128, seed: int = 0,
                        max_shapes: int = 2) -> Path:
    """Write ``num_images`` PNGs and ``annotations.json`` (COCO) under ``directory``; returns the JSON path."""
    rng = random.Random(seed)
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image = Image.new("RGB", (size, size), (235, 235, 235))
        draw = ImageDraw.Draw(image)
        taken: list[tuple[int, int, int, int]] = []
        for _ in range(rng.randint(1, max_shapes)):
            box = _place(rng, size, taken)
            if box is None:
                continue
            taken.append(box)
            category = rng.randrange(len(CATEGORIES))
            _draw(draw, CATEGORIES[category], box, rng.choice(COLOURS))
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        name = f"shape_{image_id:03d}.png"
        image.save(directory / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CATEGORIES)]
    path = directory / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def tiny_config(annotations: Path, output_dir: Path, size: int = 64, **sections: dict[str, Any]) -> dict[str, Any]:
    """A training config dict for glip-tiny on the synthetic shapes (sections are merged in)."""
    config: dict[str, Any] = {
        "model": {"config": "glip-tiny", "overrides": {"input": {"min_size": size, "max_size": size}}},
        "data": {"datasets": [{"type": "coco", "annotations": str(annotations),
                               "images": str(annotations.parent / "images")}]},
        "input": {"min_sizes": [size], "max_size": size, "flip_prob": 0.5},
        "optim": {"lr": 1e-3, "language_lr": 1e-4, "warmup_steps": 2},
        "train": {"max_steps": 4, "batch_size": 2, "num_workers": 0, "device": "cpu", "ema_decay": 0.9, "seed": 0},
        "output": {"dir": str(output_dir), "checkpoint_every": 2, "keep_last": 5, "log_every": 1, "progress": False,
                   "tensorboard": False},
    }
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(config[section].get(key), dict):
                config[section][key] = {**config[section][key], **value}
            else:
                config[section][key] = value
    return config


def assert_grounding_terms_unchanged(trainer, batch) -> None:
    """The trainer's terms for ``batch`` are exactly GLIP's three, as `GLIPLoss` alone computes them
    (an optional term with weight 0 changes nothing)."""
    import torch

    from glip.training.loss import GLIPLoss

    terms = trainer.loss_terms(batch)
    output = trainer.model(batch.images, batch.input_ids, batch.attention_mask)
    before = GLIPLoss(trainer.loss_fn.config)(output, batch.targets, batch.attention_mask)
    assert terms.keys() == before.keys()
    for key in before:
        assert torch.equal(terms[key], before[key]), key
