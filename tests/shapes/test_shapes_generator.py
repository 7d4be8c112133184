"""The split writer: determinism, annotation validity, object counts, COCO loading, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glip.shapes.cli import main
from glip.shapes.generate import generate_split, image_rng, render_image
from glip.shapes.vocabulary import (DETECTION_SHAPES, GROUNDING_ONLY_SHAPES, NOVEL_SHAPES, SPLITS, SYNONYMS,
                                    TRAINED_SHAPES)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for directory in ("a", "b", "c"):
        (tmp_path / directory / "images").mkdir(parents=True)
    first = render_image((tmp_path / "a", "ground-train", 7, 3, 320, "png"))
    again = render_image((tmp_path / "b", "ground-train", 7, 3, 320, "png"))
    other = render_image((tmp_path / "c", "ground-train", 8, 3, 320, "png"))
    png = "images/000003.png"
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()
    assert first == again
    assert (tmp_path / "a" / png).read_bytes() != (tmp_path / "c" / png).read_bytes()


def test_random_stream_depends_on_seed_split_and_index():
    draws = {key: image_rng(*key).integers(1 << 62) for key in
             [(0, "det-train", 1), (1, "det-train", 1), (0, "det-test", 1), (0, "det-train", 2)]}
    assert len(set(draws.values())) == 4
    assert image_rng(0, "det-train", 1).integers(1 << 62) == draws[(0, "det-train", 1)]


def test_subset_and_workers_regenerate_identically(tmp_path, shapes_root):
    generate_split(tmp_path, "ground-train", 5, seed=0, workers=2)
    for name in ("images/000001.png", "images/000005.png"):
        assert (tmp_path / "ground-train" / name).read_bytes() == (shapes_root / "ground-train" / name).read_bytes()
    subset = read_jsonl(tmp_path / "ground-train" / "grounding.jsonl")
    assert subset == read_jsonl(shapes_root / "ground-train" / "grounding.jsonl")[:5]


def test_refuses_to_overwrite_unless_asked(tmp_path):
    generate_split(tmp_path, "det-test", 2, seed=0, image_size=96)
    with pytest.raises(FileExistsError):
        generate_split(tmp_path, "det-test", 2, seed=0, image_size=96)
    generate_split(tmp_path, "det-test", 1, seed=0, image_size=96, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "det-test" / "images").iterdir()) == ["000001.png"]


@pytest.mark.parametrize("split", list(SPLITS))
def test_boxes_inside_images_and_object_counts(shapes_root, split):
    spec = SPLITS[split]
    coco = json.loads((shapes_root / split / "annotations.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(spec.categories)
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(spec.categories) + 1))
    per_image = {image["id"]: 0 for image in coco["images"]}
    for image in coco["images"]:
        with Image.open(shapes_root / split / image["file_name"]) as file:
            assert file.size == (image["width"], image["height"])
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    for annotation in coco["annotations"]:
        x, y, w, h = annotation["bbox"]
        width, height = sizes[annotation["image_id"]]
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width + 1e-6 and y + h <= height + 1e-6
        assert 0 < annotation["area"] <= w * h + 1e-6
        per_image[annotation["image_id"]] += 1
    assert min(per_image.values()) >= spec.min_objects and max(per_image.values()) <= spec.max_objects
    if spec.grounding:
        records = read_jsonl(shapes_root / split / "grounding.jsonl")
        assert [r["id"] for r in records] == list(range(1, len(records) + 1))  # one id per caption
        for record in records:
            for region in record["grounding"]["regions"]:
                x1, y1, x2, y2 = region["bbox"]
                assert 0 <= x1 < x2 <= record["width"] and 0 <= y1 < y2 <= record["height"]


def test_scenes_hold_only_their_splits_shapes(shapes_root):
    allowed = {"det-train": DETECTION_SHAPES, "det-test": DETECTION_SHAPES, "ground-train": TRAINED_SHAPES,
               "zeroshot-grounded": GROUNDING_ONLY_SHAPES, "zeroshot-novel": NOVEL_SHAPES,
               "synonyms": tuple(SYNONYMS.values()), "attributes": TRAINED_SHAPES,
               "attributes-train": TRAINED_SHAPES}
    for split, shapes in allowed.items():
        scenes = read_jsonl(shapes_root / split / "scenes.jsonl")
        drawn = {obj["shape"] for scene in scenes for obj in scene["objects"]}
        assert drawn <= set(shapes), split
        assert all(obj["visible"] >= 0.7 - 1e-6 for scene in scenes for obj in scene["objects"])


def test_attribute_scenes_are_one_shape_with_distinct_attributes(shapes_root):
    for scene in read_jsonl(shapes_root / "attributes" / "scenes.jsonl"):
        objects = scene["objects"]
        assert 2 <= len(objects) <= 4
        assert len({obj["shape"] for obj in objects}) == 1
        assert len({(obj["size"], obj["colour"], obj["fill"]) for obj in objects}) == len(objects)


def test_attribute_training_scenes_hold_a_same_shape_group_and_no_twins(shapes_root):
    scenes = read_jsonl(shapes_root / "attributes-train" / "scenes.jsonl")
    for scene in scenes:
        objects = scene["objects"]
        keys = [(obj["shape"], obj["size"], obj["colour"], obj["fill"]) for obj in objects]
        assert len(set(keys)) == len(keys)  # every object can be referred to alone
    shape_counts = [max(sum(o["shape"] == obj["shape"] for o in scene["objects"]) for obj in scene["objects"])
                    for scene in scenes]
    assert sum(count >= 2 for count in shape_counts) >= len(scenes) * 0.8  # a group survives placement


def test_synonym_categories_name_trained_shapes(shapes_root):
    coco = json.loads((shapes_root / "synonyms" / "annotations.json").read_text())
    assert len(coco["categories"]) >= 5
    for category in coco["categories"]:
        assert SYNONYMS[category["name"]] == category["synonym_of"]
        assert category["synonym_of"] in DETECTION_SHAPES


@pytest.mark.parametrize("split", list(SPLITS))
def test_coco_files_load_in_pycocotools(shapes_root, split):
    from pycocotools.coco import COCO

    coco = COCO(str(shapes_root / split / "annotations.json"))
    assert len(coco.getImgIds()) > 0 and len(coco.getAnnIds()) > 0


def test_sizes_are_distinct(shapes_root):
    diameters = {"small": [], "large": []}
    for scene in read_jsonl(shapes_root / "ground-train" / "scenes.jsonl"):
        for obj in scene["objects"]:
            diameters[obj["size"]].append(obj["diameter"])
    assert max(diameters["small"]) < min(diameters["large"]) / 1.5


def test_cli_generates_and_reports_one_line_errors(tmp_path, capsys):
    argv = ["generate", "--out", str(tmp_path), "--split", "zeroshot-novel", "--num-images", "2", "--seed", "3",
            "--size", "96"]
    assert main(argv) == 0
    assert len(list((tmp_path / "zeroshot-novel" / "images").glob("*.png"))) == 2
    capsys.readouterr()
    assert main(argv) == 2  # exists already
    assert main(["generate", "--out", str(tmp_path), "--split", "nope", "--num-images", "2", "--seed", "3"]) == 2
    assert main(argv[:-2] + ["--size", "8", "--overwrite"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all("error:" in line for line in errors)


def test_jpeg_images(tmp_path):
    split_dir = generate_split(tmp_path, "det-test", 2, seed=0, image_size=96, image_format="jpg")
    coco = json.loads((split_dir / "annotations.json").read_text())
    assert coco["images"][0]["file_name"] == "images/000001.jpg"
    assert np.asarray(Image.open(split_dir / "images" / "000001.jpg")).shape == (96, 96, 3)
