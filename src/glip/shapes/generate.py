"""Write one split of the shapes world: PNG images, COCO detection JSON, grounding JSON Lines.

Layout of ``OUT/SPLIT/``:

- ``images/000001.png`` ... (image id ``k`` is file ``{k:06d}.png``, or ``.jpg``; ids start at 1);
- ``annotations.json``: COCO detection (``file_name`` is relative to ``OUT/SPLIT``, like the
  ``filename`` of the grounding file, e.g. ``images/000001.png``; boxes ``[x, y, w, h]``; each
  annotation's ``segmentation`` is the object's visible pixels as COCO RLE, see `segmentations`);
- ``grounding.jsonl`` (``ground-train``, ``attributes-train`` and ``attributes``): ODVG records with ``image_id`` and a
  record ``id`` of their own (1, 2, ...; the unit of grounding evaluation), each region with the
  ``segmentation`` of its object; ``attributes`` has one record per referred object, whose caption
  is the referring phrase;
- ``scenes.jsonl``: every object of every image with its attributes, box and visible fraction;
- ``info.json``: split, seed, image size, number of images and the split's vocabulary.

The ``web`` split (pairs without boxes, for self-training) has a layout of its own: see
``glip.shapes.web``; so do the ``vqa`` and ``captions`` splits: see ``glip.shapes.understanding``.

Image ``k`` depends only on ``(seed, split, k)``, so any subset regenerates identically, with any
number of workers.

Example:
    >>> generate_split("data/shapes", "det-train", num_images=100, seed=0)  # doctest: +SKIP
    PosixPath('data/shapes/det-train')
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from glip.data.masks import mask_to_rle
from glip.files import write_atomically
from glip.shapes.captions import grounding_caption, referring_caption, referring_phrases
from glip.shapes.scene import Scene, attribute_specs, random_spec, render_scene
from glip.shapes.vocabulary import SPLITS, SplitSpec

ATTRIBUTE_GROUP_MAX = 4  # most objects of one shape in an ``attributes-train`` scene
FORMAT_VERSION = 1  # bump when a change alters the images or annotations drawn for a seed
PNG_COMPRESS_LEVEL = 1  # noisy backgrounds barely compress: level 6 saves 8% of the bytes at 1.5x the time
JPEG_QUALITY = 95
IMAGE_FORMATS = ("png", "jpg")


def image_rng(seed: int, split: str, image_id: int) -> np.random.Generator:
    """The random generator of one image, derived from ``(seed, split, image_id)`` alone."""
    digest = hashlib.sha256(f"glip-shapes/v{FORMAT_VERSION}/{seed}/{split}/{image_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def image_file_name(image_id: int, image_format: str = "png") -> str:
    return f"images/{image_id:06d}.{image_format}"


def sample_scene(rng: np.random.Generator, spec: SplitSpec, image_size: int) -> Scene:
    """A scene of ``spec``'s shapes.

    ``attributes``: 2-4 objects of one shape told apart by attributes; ``attributes-train``: such a
    group plus other objects of any trained shape, 2-7 in all, no two identical.
    """
    while True:
        count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
        if spec.name == "attributes":
            specs = attribute_specs(rng, spec.shapes, count)
        elif spec.name == "attributes-train":
            specs = attribute_specs(rng, spec.shapes, min(count, ATTRIBUTE_GROUP_MAX))
            while len(specs) < count:
                extra = random_spec(rng, spec.shapes)
                if extra not in specs:
                    specs.append(extra)
            specs = [specs[i] for i in rng.permutation(len(specs))]  # the group is not always drawn first
        else:
            specs = [random_spec(rng, spec.shapes) for _ in range(count)]
        scene = render_scene(rng, specs, image_size)
        if len(scene.objects) >= spec.min_objects:
            return scene


def _box(box: tuple[float, ...]) -> list[float]:
    return [round(v, 2) for v in box]


def segmentations(scene: Scene) -> list[dict]:
    """Each object's instance mask as COCO RLE: its visible pixels (`Scene.owner`), never empty
    (an object keeps at least ``1 - MAX_OCCLUDED`` of its pixels)."""
    return [mask_to_rle(scene.visible_mask(index)) for index in range(len(scene.objects))]


def _grounding_records(rng: np.random.Generator, spec: SplitSpec, scene: Scene, masks: list[dict],
                       header: dict) -> list[dict]:
    boxes = [_box(o.box) for o in scene.objects]
    if spec.name == "attributes":
        records = []
        for index, phrase in enumerate(referring_phrases(rng, [o.spec for o in scene.objects])):
            region = {"bbox": boxes[index], "phrase": phrase, "tokens_positive": [[0, len(phrase)]],
                      "segmentation": masks[index]}
            records.append(header | {"grounding": {"caption": phrase, "regions": [region]}, "target": index})
        return records
    caption = referring_caption if spec.name == "attributes-train" else grounding_caption
    builder = caption(rng, scene.objects)
    regions = [{"bbox": boxes[i], "phrase": text, "tokens_positive": [list(span)], "segmentation": masks[i]}
               for text, span, members in builder.phrases for i in members]
    return [header | {"grounding": {"caption": builder.caption, "regions": regions}}]


def _save(image: np.ndarray, path: Path, image_format: str) -> None:
    if image_format == "png":
        Image.fromarray(image).save(path, compress_level=PNG_COMPRESS_LEVEL)
    else:
        Image.fromarray(image).save(path, quality=JPEG_QUALITY)


def render_image(task: tuple[Path, str, int, int, int, str]) -> dict:
    """Draw, save and annotate one image.

    ``task`` is ``(split_dir, split, seed, image_id, image_size, image_format)``.

    Returns ``{"id", "file_name", "width", "height", "objects", "segmentations", "grounding"}``.
    """
    split_dir, split, seed, image_id, image_size, image_format = task
    spec = SPLITS[split]
    rng = image_rng(seed, split, image_id)
    scene = sample_scene(rng, spec, image_size)
    file_name = image_file_name(image_id, image_format)
    _save(scene.image, split_dir / file_name, image_format)
    header = {"filename": file_name, "height": image_size, "width": image_size, "image_id": image_id}
    masks = segmentations(scene)
    grounding = _grounding_records(rng, spec, scene, masks, header) if spec.grounding else []
    return {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size,
            "objects": [o.to_dict() for o in scene.objects], "segmentations": masks, "grounding": grounding}


def coco_dataset(spec: SplitSpec, images: list[dict]) -> dict:
    """COCO detection dict of rendered images (as returned by ``render_image``)."""
    annotations = []
    for image in images:
        for obj, segmentation in zip(image["objects"], image["segmentations"]):
            x1, y1, x2, y2 = obj["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"],
                                "category_id": spec.category_id(obj["shape"]),
                                "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                                "area": obj["area"], "iscrowd": 0, "segmentation": segmentation})
    categories = [{"id": i + 1, "name": name, "synonym_of": shape}
                  for i, (name, shape) in enumerate(zip(spec.categories, spec.synonym_of))]
    return {"info": {"description": f"glip shapes world, split {spec.name}"},
            "images": [{key: image[key] for key in ("id", "file_name", "width", "height")} for image in images],
            "annotations": annotations, "categories": categories}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)
    write_atomically(path, lambda temporary: temporary.write_text(text))


def _write_json(path: Path, data: dict) -> None:
    write_atomically(path, lambda temporary: temporary.write_text(json.dumps(data, separators=(",", ":")) + "\n"))


def _prepare(split_dir: Path, overwrite: bool) -> None:
    if split_dir.exists() and any(split_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{split_dir} is not empty (pass overwrite=True / --overwrite to replace it)")
        if not (split_dir / "info.json").exists():
            raise FileExistsError(f"{split_dir} was not written by the shapes generator; not replacing it")
        shutil.rmtree(split_dir)
    (split_dir / "images").mkdir(parents=True, exist_ok=True)


def _render_all(tasks: list[tuple], workers: int, progress: bool, split: str,
                render: Callable[[tuple], dict] = render_image) -> list[dict]:
    """``render(task)`` for every task, in order, in this process or in ``workers`` processes."""
    bar = tqdm(total=len(tasks), desc=f"shapes {split}", unit="img", disable=not progress)
    if workers <= 1:
        results = []
        for task in tasks:
            results.append(render(task))
            bar.update()
    else:
        # fork: workers inherit the imported modules instead of importing torch again.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            results = []
            for result in pool.imap(render, tasks, chunksize=8):
                results.append(result)
                bar.update()
    bar.close()
    return results


def check_generation(num_images: int, image_format: str, image_size: int) -> None:
    """The settings every split's generation shares: one-line errors before anything is written."""
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {image_format!r}; choose from {', '.join(IMAGE_FORMATS)}")
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64 pixels, got {image_size}")


def generate_split(out_dir: str | os.PathLike, split: str, num_images: int, seed: int, image_size: int = 320,
                   workers: int = 1, progress: bool = False, overwrite: bool = False,
                   image_format: str | None = None, shard_size: int | None = None) -> Path:
    """Render ``num_images`` images of ``split`` and write their annotations under ``out_dir/split``.

    ``split="web"`` writes image-caption pairs without boxes instead (`glip.shapes.web`);
    ``"vqa"`` and ``"captions"`` write questions or reference captions (`glip.shapes.understanding`).

    Args:
        out_dir: dataset root; the split goes to ``out_dir/split``.
        split: one of ``SPLITS`` (det-train, ground-train, det-test, zeroshot-grounded,
            zeroshot-novel, synonyms, attributes), or ``"web"``, ``"vqa"``, ``"captions"``.
        num_images: images to draw (ids 1..num_images).
        seed: dataset seed; with the split name and image id it fixes each image.
        image_size: side of the square images in pixels (at least 64).
        workers: processes drawing images (1: in this process).
        progress: show a tqdm progress bar.
        overwrite: replace an existing split directory written by this generator.
        image_format: ``"png"`` (lossless, about 200 KB an image: the background noise does not
            compress) or ``"jpg"`` (quality 95, about 50 KB and faster to write); default png,
            jpg for ``web``.
        shard_size: ``web`` only: also write webdataset tar shards of this many pairs.

    Returns:
        The split directory.
    """
    if split == "web":
        from glip.shapes.web import generate_web_split  # web builds on this module's helpers

        return generate_web_split(out_dir, num_images, seed, image_size=image_size, workers=workers,
                                  progress=progress, overwrite=overwrite, image_format=image_format or "jpg",
                                  shard_size=shard_size)
    if split in ("vqa", "captions"):
        from glip.shapes.understanding import generate_understanding_split  # builds on this module's helpers

        if shard_size is not None:
            raise ValueError(f"shard_size is for the web split only; {split} writes no pairs")
        return generate_understanding_split(out_dir, split, num_images, seed, image_size=image_size,
                                            workers=workers, progress=progress, overwrite=overwrite,
                                            image_format=image_format or "png")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}, web, vqa, captions")
    if shard_size is not None:
        raise ValueError(f"shard_size is for the web split only; {split} writes no pairs")
    image_format = image_format or "png"
    check_generation(num_images, image_format, image_size)
    spec = SPLITS[split]
    split_dir = Path(out_dir) / split
    _prepare(split_dir, overwrite)
    info = {"split": split, "seed": seed, "num_images": num_images, "image_size": image_size,
            "image_format": image_format, "format_version": FORMAT_VERSION, "shapes": list(spec.shapes),
            "categories": list(spec.categories), "synonym_of": list(spec.synonym_of)}
    _write_json(split_dir / "info.json", info)  # first: it marks the directory as ours
    tasks = [(split_dir, split, seed, image_id, image_size, image_format) for image_id in range(1, num_images + 1)]
    images = _render_all(tasks, max(1, min(workers, num_images)), progress, split)
    _write_json(split_dir / "annotations.json", coco_dataset(spec, images))
    if spec.grounding:
        records = [record for image in images for record in image["grounding"]]
        # ``id`` names the record (image *and* caption): several captions share one image.
        _write_jsonl(split_dir / "grounding.jsonl", [{"id": number, **record} for number, record in
                                                     enumerate(records, start=1)])
    _write_jsonl(split_dir / "scenes.jsonl", [{"image_id": image["id"], "file_name": image["file_name"],
                                               "objects": image["objects"]} for image in images])
    return split_dir
