"""The ``web`` split: image-caption pairs without boxes, whose captions name the novel shapes.

GLIP scales its concepts with web image-text pairs: a teacher boxes the phrases of their captions
and a student learns from those pseudo labels. Here the ``web`` split plays the web: its captions
mention ellipse, trapezoid and octagon, which no gold split names, in context with trained shapes
and attributes ("a red ellipse to the left of a blue star"). Training reads only the pairs; the
true boxes go to a separate file, for measuring the pseudo labels (`glip.shapes.pseudo_quality`).

Scenes (`WEB_SCENES`): 70% one novel-shape object plus 1-4 trained-shape objects, 15% two novel
plus 1-3 trained, 15% 2-5 trained-shape objects only; every object is mentioned once
(`glip.shapes.captions.web_caption`).

Layout of ``OUT/web/``:

- ``images/000001.jpg`` ...: pair ``k`` has key ``f"{k:06d}"`` and image ``images/{key}.jpg``;
- ``pairs.jsonl``: ``{"image": "images/000001.jpg", "caption": ..., "key": "000001"}`` per pair,
  the image path relative to the file: what ``glip label`` reads;
- ``shards/web-000000.tar`` ... (with ``shard_size``): webdataset shards of ``shard_size`` pairs,
  members ``{key}.jpg``, ``{key}.txt`` (the caption) and ``{key}.json`` (``{"key", "caption"}``) in
  key order, with fixed owners and timestamps, so the same seed gives the same bytes;
- ``truth/truth.jsonl``: for measuring only, never for training (in a folder of its own, so that
  ``glip label OUT/web`` finds only ``pairs.jsonl``): per pair an ODVG record with ``key``,
  ``shard`` (when sharded), the caption and one region per (phrase, object) with ``kind``
  (``"trained"`` or ``"novel"``), ``shape`` and ``segmentation`` (the object's visible pixels as
  COCO RLE, as in the other splits), plus every object of the scene;
- ``info.json``: split, seed, image size, number of pairs, format version, shard size, the mix.

Pair ``k`` depends only on ``(seed, "web", k)``, like every other split.

Example:
    >>> generate_web_split("data/shapes", 10000, seed=0, workers=2, shard_size=1000)  # doctest: +SKIP
    PosixPath('data/shapes/web')
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from glip.files import write_atomically
from glip.shapes.captions import web_caption
from glip.shapes.generate import (FORMAT_VERSION, _box, _prepare, _render_all, _save, _write_json, _write_jsonl,
                                  check_generation, image_file_name, image_rng, segmentations)
from glip.shapes.scene import Scene, random_spec, render_scene
from glip.shapes.vocabulary import NOVEL_SHAPES, TRAINED_SHAPES

WEB_SPLIT = "web"
# (name, share of the pairs, novel-shape objects, (fewest, most) trained-shape objects)
WEB_SCENES: tuple[tuple[str, float, int, tuple[int, int]], ...] = (
    ("one novel shape", 0.70, 1, (1, 4)),
    ("two novel shapes", 0.15, 2, (1, 3)),
    ("trained shapes only", 0.15, 0, (2, 5)),
)


def pair_key(image_id: int) -> str:
    """The key of pair ``image_id``: its zero-padded number, also the stem of its image file."""
    return f"{image_id:06d}"


def sample_web_scene(rng: np.random.Generator, image_size: int) -> Scene:
    """A scene of the mix `WEB_SCENES`, redrawn until every object found a place."""
    shares = [share for _, share, _, _ in WEB_SCENES]
    _, _, novel, (fewest, most) = WEB_SCENES[int(rng.choice(len(WEB_SCENES), p=shares))]
    while True:
        specs = [random_spec(rng, NOVEL_SHAPES) for _ in range(novel)]
        specs += [random_spec(rng, TRAINED_SHAPES) for _ in range(int(rng.integers(fewest, most + 1)))]
        specs = [specs[i] for i in rng.permutation(len(specs))]  # the novel object is not always drawn first
        scene = render_scene(rng, specs, image_size)
        if len(scene.objects) == len(specs):
            return scene


def render_web_pair(task: tuple[Path, int, int, int, str]) -> dict:
    """Draw and save one pair's image; return its caption and truth.

    ``task`` is ``(split_dir, seed, image_id, image_size, image_format)``.

    Returns ``{"key", "image_id", "file_name", "width", "height", "caption", "regions", "objects"}``.
    """
    split_dir, seed, image_id, image_size, image_format = task
    rng = image_rng(seed, WEB_SPLIT, image_id)
    scene = sample_web_scene(rng, image_size)
    builder = web_caption(rng, scene.objects)
    file_name = image_file_name(image_id, image_format)
    _save(scene.image, split_dir / file_name, image_format)
    masks = segmentations(scene)
    regions = []
    for text, span, members in builder.phrases:
        for index in members:
            shape = scene.objects[index].spec.shape
            regions.append({"bbox": _box(scene.objects[index].box), "phrase": text, "tokens_positive": [list(span)],
                            "shape": shape, "kind": "novel" if shape in NOVEL_SHAPES else "trained",
                            "segmentation": masks[index]})
    return {"key": pair_key(image_id), "image_id": image_id, "file_name": file_name, "width": image_size,
            "height": image_size, "caption": builder.caption, "regions": regions,
            "objects": [o.to_dict() for o in scene.objects]}


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed: same pairs, same shard bytes
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, split_dir: Path, pairs: list[dict]) -> None:
    """Write ``pairs`` (as returned by `render_web_pair`) as one webdataset tar shard, atomically."""
    def write(temporary: Path) -> None:
        with tarfile.open(temporary, "w", format=tarfile.USTAR_FORMAT) as tar:
            for pair in pairs:
                key, extension = pair["key"], Path(pair["file_name"]).suffix
                _tar_member(tar, key + extension, (split_dir / pair["file_name"]).read_bytes())
                _tar_member(tar, key + ".txt", pair["caption"].encode())
                _tar_member(tar, key + ".json", json.dumps({"key": key, "caption": pair["caption"]}).encode())

    write_atomically(path, write)


def shard_name(index: int) -> str:
    return f"web-{index:06d}"


def generate_web_split(out_dir: str | os.PathLike, num_images: int, seed: int, image_size: int = 320,
                       workers: int = 1, progress: bool = False, overwrite: bool = False,
                       image_format: str = "jpg", shard_size: int | None = None) -> Path:
    """Render ``num_images`` pairs of the ``web`` split under ``out_dir/web``.

    Args:
        out_dir: dataset root; the split goes to ``out_dir/web``.
        num_images: pairs to draw (keys 000001 ...).
        seed: dataset seed; with the split name and pair number it fixes each pair.
        image_size: side of the square images in pixels (at least 64).
        workers: processes drawing images (1: in this process).
        progress: show a tqdm progress bar.
        overwrite: replace an existing split directory written by this generator.
        image_format: ``"jpg"`` (quality 95, like web images) or ``"png"``.
        shard_size: also write webdataset tar shards of this many pairs (the last may hold fewer).

    Returns:
        The split directory.
    """
    check_generation(num_images, image_format, image_size)
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"shard_size must be at least 1 pair, got {shard_size}")
    split_dir = Path(out_dir) / WEB_SPLIT
    _prepare(split_dir, overwrite)
    info = {"split": WEB_SPLIT, "seed": seed, "num_images": num_images, "image_size": image_size,
            "image_format": image_format, "format_version": FORMAT_VERSION, "shard_size": shard_size,
            "scenes": [{"name": name, "share": share, "novel_objects": novel, "trained_objects": list(trained)}
                       for name, share, novel, trained in WEB_SCENES],
            "novel_shapes": list(NOVEL_SHAPES), "trained_shapes": list(TRAINED_SHAPES)}
    _write_json(split_dir / "info.json", info)  # first: it marks the directory as ours
    tasks = [(split_dir, seed, image_id, image_size, image_format) for image_id in range(1, num_images + 1)]
    pairs = _render_all(tasks, max(1, min(workers, num_images)), progress, WEB_SPLIT, render=render_web_pair)
    _write_jsonl(split_dir / "pairs.jsonl", [{"image": pair["file_name"], "caption": pair["caption"],
                                             "key": pair["key"]} for pair in pairs])
    shards: list[str | None] = [None] * len(pairs)
    if shard_size is not None:
        for index, start in enumerate(range(0, len(pairs), shard_size)):
            write_shard(split_dir / "shards" / f"{shard_name(index)}.tar", split_dir, pairs[start:start + shard_size])
            shards[start:start + shard_size] = [shard_name(index)] * len(pairs[start:start + shard_size])
    _write_jsonl(split_dir / "truth" / "truth.jsonl", [truth_record(pair, shard) for pair, shard in zip(pairs, shards)])
    return split_dir


def truth_record(pair: dict, shard: str | None) -> dict:
    """The ODVG truth record of a rendered pair (``shard`` only when the pairs were sharded)."""
    record = {"key": pair["key"], "image_id": pair["image_id"], "filename": pair["file_name"],
              "height": pair["height"], "width": pair["width"]}
    if shard is not None:
        record["shard"] = shard
    return record | {"grounding": {"caption": pair["caption"], "regions": pair["regions"]}, "objects": pair["objects"]}
