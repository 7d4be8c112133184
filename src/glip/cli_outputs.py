"""Where ``glip detect`` writes its results, decided before any work is done.

Each image (and each ``--adapter`` task) gets ``NAME.json`` and an annotated ``NAME.png`` in the
output folder, NAME being the picture's stem (``scene``, or ``scene.TASK`` with a task). A result
never replaces an input picture, never shares its name with another result of the same run, and
never replaces a file that is not an earlier result of ``glip detect`` (a JSON with the result's
fields, a PNG carrying our marker); an earlier result is replaced, so a run repeated into the same
folder updates its files. The first free name is taken, in this order:

- ``scene``: the usual name;
- ``scene.det``: when ``scene.json`` or ``scene.png`` is an input or someone else's file
  (``glip detect photos/scene.png --out photos`` writes ``photos/scene.det.png``);
- ``scene-2``, ``scene-3``, ...: when an earlier image of the run took the name (``a/scene.png``
  and ``b/scene.jpg``), each again with ``.det`` if needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

# Text chunk written into every annotated PNG: how a later run knows the file is ours to replace.
MARKER_KEY = "Software"
MARKER_VALUE = "glip detect"
# Fields of a result JSON (`ImageDetections.to_dict`): how a later run knows a JSON is ours.
RESULT_FIELDS = frozenset({"image", "width", "height", "caption", "phrases", "detections"})
_LARGEST_RESULT_BYTES = 64 * 1024 * 1024  # a bigger JSON is not read to see whether it is ours


@dataclass(frozen=True)
class OutputPaths:
    """The two files of one result: the detections as JSON and the annotated picture."""

    json: Path
    png: Path


def png_marker() -> PngInfo:
    """The ``pnginfo`` to save an annotated picture with (marks it as a result of ``glip detect``)."""
    info = PngInfo()
    info.add_text(MARKER_KEY, MARKER_VALUE)
    return info


def plan_outputs(images: Sequence[str | os.PathLike], out: Path, suffixes: Sequence[str]) -> list[list[OutputPaths]]:
    """Names of every result of a run: ``plan[t][i]`` for task suffix ``suffixes[t]`` ("" without a
    task, else ``".TASK"``) and image ``images[i]``; see the module docstring for the rules.

    Raises:
        ValueError: ``out`` exists and is not a folder.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder; give a folder for the results")
    inputs = {_identity(Path(image)) for image in images} - {None}
    taken: set[str] = set()  # names already planned, case-folded (case-insensitive file systems)
    plan = []
    for suffix in suffixes:
        row = []
        for image in images:
            name = _free_name(Path(image).stem + suffix, out, inputs, taken)
            taken.add(name.casefold())
            row.append(OutputPaths(out / f"{name}.json", out / f"{name}.png"))
        plan.append(row)
    return plan


def _free_name(base: str, out: Path, inputs: set[tuple[int, int]], taken: set[str]) -> str:
    """The first of base, base.det, base-2, base-2.det, ... that no input, planned result or foreign
    file blocks (a name taken by this run moves on to the next number at once)."""
    number = 1
    while True:
        name = base if number == 1 else f"{base}-{number}"
        if name.casefold() not in taken:
            for candidate in (name, f"{name}.det"):
                if candidate.casefold() not in taken and not _blocked(out, candidate, inputs):
                    return candidate
        number += 1


def _blocked(out: Path, name: str, inputs: set[tuple[int, int]]) -> bool:
    """Whether writing ``name.json`` / ``name.png`` would replace an input or a file not ours."""
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    for path in (json_path, png_path):
        if _identity(path) in inputs or (path.exists() and not path.is_file()):
            return True
    return ((json_path.exists() and not _is_result_json(json_path))
            or (png_path.exists() and not _is_result_png(png_path)))


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (the same file under any name or link), else None."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _is_result_json(path: Path) -> bool:
    try:
        if path.stat().st_size > _LARGEST_RESULT_BYTES:
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and RESULT_FIELDS <= set(record)


def _is_result_png(path: Path) -> bool:
    try:
        with Image.open(path) as image:  # reads the header and the text chunks before the pixels
            return image.format == "PNG" and image.info.get(MARKER_KEY) == MARKER_VALUE
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
