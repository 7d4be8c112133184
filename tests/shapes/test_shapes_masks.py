"""Instance masks of the shapes world: exact, disjoint, inside their boxes, written for every split.

The renderer's invariant: a pixel belongs to the object on top among those covering at least half
of it (the 0.5 of the supersampled drawing that also decides boxes and visible fractions); a pixel
no object covers at all is pure background; a pixel covered less than half (an anti-aliased rim)
belongs to no mask. Holes (the ring's, the crescent's bite) are not the object's pixels; the tone
of a striped or dotted pattern is.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from glip.data import CocoDetectionDataset, GroundingJsonlDataset, build_eval_transforms
from glip.data.masks import rle_to_mask
from glip.shapes.generate import generate_split, segmentations
from glip.shapes.geometry import draw_shape
from glip.shapes.render import background
from glip.shapes.scene import ObjectSpec, Scene, random_spec, render_scene
from glip.shapes.vocabulary import SPLITS, TRAINED_SHAPES

SIZE = 160


def _footprints(scene: Scene) -> list[np.ndarray]:
    """Each object redrawn on its own from its shape, diameter and angle: its ``alpha`` at image size."""
    footprints = []
    for obj in scene.objects:
        drawn = draw_shape(obj.spec.shape, obj.diameter, obj.angle)
        left, top = obj.box[0] - drawn.box[0], obj.box[1] - drawn.box[1]
        assert left == int(left) and top == int(top)  # objects are placed on whole pixels
        left, top = int(left), int(top)
        padded = np.zeros((SIZE + 2 * drawn.side, SIZE + 2 * drawn.side), dtype=np.float32)  # room for the margin
        padded[top + drawn.side:top + 2 * drawn.side, left + drawn.side:left + 2 * drawn.side] = drawn.alpha
        alpha = padded[drawn.side:drawn.side + SIZE, drawn.side:drawn.side + SIZE]
        assert alpha.sum() == pytest.approx(drawn.alpha.sum())  # the whole shape lies in the image
        footprints.append(alpha)
    return footprints


def _scenes() -> list[tuple[int, Scene]]:
    scenes = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        specs = [random_spec(rng, TRAINED_SHAPES) for _ in range(8)]
        specs[0] = ObjectSpec("ring", "blue", "large", "striped")  # always a hole and a pattern
        scenes.append((seed, render_scene(np.random.default_rng(seed), specs, SIZE)))
    return scenes


@pytest.mark.parametrize("seed, scene", _scenes())
def test_masks_are_the_visible_half_covered_pixels(seed: int, scene: Scene) -> None:
    footprints = _footprints(scene)
    masks = np.stack([rle_to_mask(rle) for rle in segmentations(scene)])  # [N, H, W]
    expected = np.full(scene.owner.shape, -1)
    for index, alpha in enumerate(footprints):
        expected[alpha >= 0.5] = index  # later objects paint over earlier ones
    for index, (obj, mask) in enumerate(zip(scene.objects, masks)):
        assert (mask == (expected == index)).all()
        full = int((footprints[index] >= 0.5).sum())
        assert mask.sum() > 0 and abs(mask.sum() / full - obj.visible) < 1e-9
        rows, cols = np.nonzero(mask)
        x1, y1, x2, y2 = obj.box
        assert cols.min() >= math.floor(x1) and cols.max() + 1 <= math.ceil(x2)
        assert rows.min() >= math.floor(y1) and rows.max() + 1 <= math.ceil(y2)
    assert masks.sum(axis=0).max() == 1  # one object per pixel
    covered = np.stack(footprints).max(axis=0)  # [H, W]
    assert (masks.any(axis=0) == (covered >= 0.5)).all()
    untouched = covered == 0
    plain = np.rint(background(np.random.default_rng(seed), SIZE)).astype(np.uint8)
    assert (scene.image[untouched] == plain[untouched]).all()
    ring = scene.objects[0]
    centre_x, centre_y = int((ring.box[0] + ring.box[2]) / 2), int((ring.box[1] + ring.box[3]) / 2)
    assert not masks[0, centre_y, centre_x]  # the hole is not the ring's


def _check_image_masks(records: list[tuple[list[float], dict]], width: int, height: int) -> None:
    """``(xyxy box, segmentation)`` of one image's objects: RLE with a str, inside the box, disjoint."""
    union = np.zeros((height, width), dtype=np.int32)
    for (x1, y1, x2, y2), rle in records:
        assert isinstance(rle["counts"], str) and rle["size"] == [height, width]
        mask = rle_to_mask(rle)
        rows, cols = np.nonzero(mask)
        assert cols.min() >= math.floor(x1) and cols.max() + 1 <= math.ceil(x2)
        assert rows.min() >= math.floor(y1) and rows.max() + 1 <= math.ceil(y2)
        union += mask
    assert union.max() == 1


@pytest.mark.parametrize("split", ["det-train", "ground-train", "attributes"])
def test_every_annotation_and_region_has_its_mask(shapes_root: Path, split: str) -> None:
    data = json.loads((shapes_root / split / "annotations.json").read_text())
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        by_image.setdefault(ann["image_id"], []).append(([x, y, x + w, y + h], ann["segmentation"]))
    for image in data["images"]:
        _check_image_masks(by_image[image["id"]], image["width"], image["height"])
    if not SPLITS[split].grounding:
        return
    for line in (shapes_root / split / "grounding.jsonl").read_text().splitlines():
        record = json.loads(line)
        coco = {json.dumps(segmentation) for _, segmentation in by_image[record["image_id"]]}
        for region in record["grounding"]["regions"]:
            assert json.dumps(region["segmentation"]) in coco  # the same mask as the object's annotation


def test_web_truth_regions_have_masks(tmp_path: Path) -> None:
    web = generate_split(tmp_path, "web", 4, seed=1, image_size=96)
    for line in (web / "truth" / "truth.jsonl").read_text().splitlines():
        record = json.loads(line)
        regions = record["grounding"]["regions"]
        assert len(regions) == len(record["objects"])  # web captions mention every object once
        _check_image_masks([(r["bbox"], r["segmentation"]) for r in regions], record["width"], record["height"])
    assert "segmentation" not in (web / "pairs.jsonl").read_text()  # training reads no truth


def test_training_readers_give_the_generated_masks(shapes_root: Path) -> None:
    for size in (320, 160):  # as drawn, and halved (resized masks of neighbours may share a border pixel)
        transform = build_eval_transforms(size, None)
        detection = CocoDetectionDataset(shapes_root / "det-train" / "annotations.json", shapes_root / "det-train",
                                         transform=transform, max_prompt_tokens=None)
        grounding = GroundingJsonlDataset(shapes_root / "ground-train" / "grounding.jsonl",
                                          shapes_root / "ground-train", transform=transform)
        for example in (detection[0], detection[1], grounding[0]):
            masks = example.sample.masks  # [N, size, size]
            assert masks.shape == (example.sample.num_boxes, size, size)
            if size == 320:
                assert masks.sum(axis=0).max() == 1
            for box, mask in zip(example.sample.boxes, masks):
                rows, cols = np.nonzero(mask)
                assert cols.min() >= box[0] - 1 and cols.max() + 1 <= box[2] + 1
                assert rows.min() >= box[1] - 1 and rows.max() + 1 <= box[3] + 1
