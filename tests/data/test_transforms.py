"""Transforms: flip (boxes and left/right words with spans), multi-scale resize, normalisation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_helpers import make_image
from glip.data import (
    GroundingSample,
    Normalize,
    RandomHorizontalFlip,
    RandomResize,
    build_eval_transforms,
    build_train_transforms,
    open_training_image,
    swap_left_right,
)
from glip.data.validation import DataError
from glip.images import PreprocessConfig, preprocess


def _sample(width=64, height=48, caption="the left star and the right circle"):
    return GroundingSample(
        image_path=Path("x.png"), caption=caption, phrase_spans=[[(4, 13)], [(22, 34)]],
        boxes=np.array([[2, 3, 20, 13], [30, 5, 64, 40]], dtype=np.float32), box_phrases=[0, 1],
        image_id=1, source="x.jsonl:1", width=width, height=height,
    )


def test_flip_mirrors_boxes_and_swaps_words_with_spans():
    image = Image.new("RGB", (64, 48))
    image.putpixel((0, 0), (255, 0, 0))
    sample = _sample()
    flipped_image, flipped = RandomHorizontalFlip(p=1.0)(image, sample, random.Random(0))
    assert flipped_image.getpixel((63, 0)) == (255, 0, 0)
    np.testing.assert_allclose(flipped.boxes, [[44, 3, 62, 13], [0, 5, 34, 40]])
    assert flipped.caption == "the right star and the left circle"
    assert flipped.phrase_texts() == ["right star", "left circle"]
    assert sample.caption == "the left star and the right circle"  # input untouched
    np.testing.assert_allclose(sample.boxes[0], [2, 3, 20, 13])
    # Flipping twice restores everything.
    _, back = RandomHorizontalFlip(p=1.0)(flipped_image, flipped, random.Random(0))
    np.testing.assert_allclose(back.boxes, sample.boxes)
    assert back.caption == sample.caption and back.phrase_spans == sample.phrase_spans


def test_flip_probability_zero_and_rng():
    sample = _sample()
    image = Image.new("RGB", (64, 48))
    _, kept = RandomHorizontalFlip(p=0.0)(image, sample, random.Random(0))
    assert kept.caption == sample.caption
    flips = [RandomHorizontalFlip(0.5)(image, sample, random.Random(seed))[1].caption != sample.caption
             for seed in range(200)]
    assert 60 < sum(flips) < 140


@pytest.mark.parametrize(
    "caption, spans, expected_caption, expected_texts",
    [
        ("Left of the RIGHT-most cup", [[(0, 4)], [(12, 26)]],
         "Right of the LEFT-most cup", ["Right", "LEFT-most cup"]),
        ("leftover bright cup at leftmost", [[(0, 8)], [(9, 19)], [(23, 31)]],
         "leftover bright cup at rightmost", ["leftover", "bright cup", "rightmost"]),
        ("the left, right and left", [[(4, 24)], [(10, 15)]],
         "the right, left and right", ["right, left and right", "left"]),
        ("no sides here", [[(0, 2)]], "no sides here", ["no"]),
    ],
)
def test_swap_left_right_cases(caption, spans, expected_caption, expected_texts):
    new_caption, new_spans = swap_left_right(caption, spans)
    assert new_caption == expected_caption
    assert [" ".join(new_caption[s:e] for s, e in phrase) for phrase in new_spans] == expected_texts


def test_span_boundary_inside_a_swapped_word_moves_to_the_word_edge():
    caption, spans = swap_left_right("a left hand", [[(3, 6)], [(2, 4)]])
    assert caption == "a right hand"
    assert spans == [[(2, 7)], [(2, 7)]]


def test_resize_scales_boxes():
    sample = _sample()
    image = Image.new("RGB", (64, 48))
    resized, out = RandomResize([96], max_size=1333)(image, sample, random.Random(0))
    assert resized.size == (128, 96) and (out.width, out.height) == (128, 96)
    np.testing.assert_allclose(out.boxes, sample.boxes * 2)
    # The long side cap: 64x48 -> short 480 would make the long side 640 > 600.
    resized, out = RandomResize([480], max_size=600)(image, sample, random.Random(0))
    assert resized.size == (600, 450)
    np.testing.assert_allclose(out.boxes, sample.boxes * np.array([600 / 64, 450 / 48] * 2), rtol=1e-6)


def test_multi_scale_draws_from_the_list():
    image = Image.new("RGB", (40, 30))
    transform = RandomResize([30, 60, 90], max_size=None)
    heights = {transform(image, _sample(40, 30), random.Random(seed))[0].size[1] for seed in range(50)}
    assert heights == {30, 60, 90}


def test_normalize_and_eval_transform_match_preprocess(tmp_path):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 51, 3), dtype=np.uint8))
    tensor, _ = Normalize()(image, _sample(51, 37), random.Random(0))
    config = PreprocessConfig(min_size=37, max_size=None)
    assert torch.equal(tensor, preprocess(image, config))
    tensor, out = build_eval_transforms(min_size=80, max_size=100)(image, _sample(51, 37), random.Random(0))
    assert torch.equal(tensor, preprocess(image, PreprocessConfig(min_size=80, max_size=100)))
    assert (out.height, out.width) == tuple(tensor.shape[1:])


def test_train_transform_is_deterministic_given_the_rng():
    image = Image.new("RGB", (64, 48), (10, 20, 30))
    transform = build_train_transforms(min_sizes=(32, 64, 96), max_size=200)
    a = transform(image, _sample(), random.Random(5))
    b = transform(image, _sample(), random.Random(5))
    assert torch.equal(a[0], b[0]) and a[1].caption == b[1].caption
    np.testing.assert_array_equal(a[1].boxes, b[1].boxes)


def test_open_training_image_checks_the_recorded_size(tmp_path):
    path = make_image(tmp_path / "a.png", 64, 48)
    sample = _sample().replace(image_path=path)
    assert open_training_image(sample).size == (64, 48)
    with pytest.raises(DataError, match="x.jsonl:1: image .* is 64x48 but the annotation says 48x64"):
        open_training_image(sample.replace(width=48, height=64))
    Image.new("RGBA", (64, 48)).save(tmp_path / "b.png")
    assert open_training_image(sample.replace(image_path=tmp_path / "b.png")).mode == "RGB"


def test_open_training_image_uses_exif_rotation_when_the_record_says_so(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (64, 48), (0, 0, 255)).save(tmp_path / "r.jpg", exif=exif.tobytes())
    sample = _sample().replace(image_path=tmp_path / "r.jpg")
    assert open_training_image(sample).size == (64, 48)  # stored pixels, as the official loader
    assert open_training_image(sample.replace(width=48, height=64)).size == (48, 64)
