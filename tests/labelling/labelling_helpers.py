"""Small input shards for the labelling tests: 32-64 px pictures with captions."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS = ["a red star above a blue ring", "a green square next to the yellow circle", "a big triangle"]


def picture(seed: int, size: tuple[int, int] = (48, 40), format: str = "PNG") -> bytes:
    """An encoded random picture (width, height)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format)
    return buffer.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


def pair_members(key: str, seed: int, caption: str | None, extension: str = "png") -> list[tuple[str, bytes]]:
    fmt = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[extension]
    members = [(f"{key}.{extension}", picture(seed, format=fmt))]
    if caption is not None:
        members.append((f"{key}.txt", caption.encode()))
    members.append((f"{key}.json", json.dumps({"url": f"http://example.com/{key}"}).encode()))
    return members


def clean_tar(path: Path, count: int = 4, start: int = 0) -> Path:
    members = []
    for index in range(start, start + count):
        members += pair_members(f"{index:06d}", index, CAPTIONS[index % len(CAPTIONS)])
    return write_tar(path, members)


def read_outputs(out: Path) -> dict[str, object]:
    """Every file of a labelling output folder (manifest without its timings) for comparisons."""
    files: dict[str, object] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        relative = str(path.relative_to(out))
        if relative == "manifest.json":
            manifest = json.loads(path.read_text())
            manifest["totals"].pop("seconds")
            for stats in manifest["shards"].values():
                stats.pop("seconds")
            files[relative] = manifest
        elif relative.startswith(".shards/"):
            done = json.loads(path.read_text())
            done["stats"].pop("seconds")
            files[relative] = done
        else:
            files[relative] = path.read_bytes()
    return files
