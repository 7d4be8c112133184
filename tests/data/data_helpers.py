"""Builders of tiny on-disk datasets for the data tests (PIL images, hand-written JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def make_image(path: Path, width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """Write a solid-colour PNG with a brighter left half (so flips are visible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), color)
    image.paste((255, 255, 255), (0, 0, width // 2, height // 4))
    image.save(path)
    return path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[object]) -> Path:
    """Write JSON Lines; str items are written verbatim (to make malformed lines)."""
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def coco_dataset_files(
    root: Path,
    categories: list[str],
    images: list[dict],
    annotations: list[dict],
) -> tuple[Path, Path]:
    """Write a COCO JSON and its image files.

    ``images`` items: ``{"id", "file_name", "width", "height"}``; an item with ``"absent": True``
    gets no file. Categories get ids 1..C.
    """
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for image in images:
        record = {k: v for k, v in image.items() if k != "absent"}
        if not image.get("absent"):
            make_image(image_dir / image["file_name"], image.get("width", 64), image.get("height", 48))
        records.append(record)
    cats = [{"id": i + 1, "name": name} for i, name in enumerate(categories)]
    for index, ann in enumerate(annotations):
        ann.setdefault("id", index + 1)
        ann.setdefault("iscrowd", 0)
    data = {"images": records, "annotations": annotations, "categories": cats}
    annotation_file = write_json(root / "instances.json", data)
    return annotation_file, image_dir
