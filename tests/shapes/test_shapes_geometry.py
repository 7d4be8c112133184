"""Shape outlines, drawing and scene placement."""

from __future__ import annotations

import numpy as np
import pytest

from glip.shapes.geometry import ROTATION_RANGE, SUPERSAMPLE, draw_shape, polygon
from glip.shapes.render import background, pattern_tone
from glip.shapes.scene import MAX_OCCLUDED, ObjectSpec, render_scene
from glip.shapes.vocabulary import COLOURS, SHAPES


@pytest.mark.parametrize("shape", SHAPES)
def test_outline_fits_unit_square_and_drawing_is_tight(shape):
    outline = polygon(shape)
    if outline is not None:
        assert np.allclose(np.abs(outline).max(), 1.0) and np.all(np.abs(outline) <= 1.0 + 1e-9)
    assert shape in ROTATION_RANGE
    for angle in (0.0, 37.0, -90.0):
        drawn = draw_shape(shape, 40.0, angle)
        x1, y1, x2, y2 = drawn.box
        assert 0 <= x1 < x2 <= drawn.side and 0 <= y1 < y2 <= drawn.side
        assert max(x2 - x1, y2 - y1) <= 40.0 * 1.45 and max(x2 - x1, y2 - y1) >= 40.0 * 0.5
        assert (x1 * SUPERSAMPLE).is_integer()
        covered = np.argwhere(drawn.alpha > 0)  # [K, 2] rows, cols
        assert covered[:, 1].min() >= np.floor(x1) and covered[:, 1].max() < np.ceil(x2)
        assert 0 < drawn.area <= (x2 - x1) * (y2 - y1)


def test_unrotated_square_spans_its_diameter():
    drawn = draw_shape("square", 40.0, 0.0)
    assert abs((drawn.box[2] - drawn.box[0]) - 40.0) <= 0.5 and abs(drawn.area - 1600.0) < 60.0


def test_ring_has_a_hole_and_crescent_a_bite():
    ring, circle = draw_shape("ring", 60.0, 0.0), draw_shape("circle", 60.0, 0.0)
    assert ring.alpha[ring.side // 2, ring.side // 2] == 0 and circle.alpha[circle.side // 2, circle.side // 2] == 1
    assert draw_shape("crescent", 60.0, 0.0).area < 0.6 * circle.area


def test_pattern_tone_keeps_the_hue_apart():
    for colour in COLOURS.values():
        base = np.asarray(colour, dtype=np.float32)
        assert np.abs(pattern_tone(base) - base).max() > 50


def test_background_is_mid_toned():
    for seed in range(8):
        image = background(np.random.default_rng(seed), 96)
        assert image.shape == (96, 96, 3) and 50 < image.mean() < 200


def test_scene_objects_inside_and_not_hidden():
    rng = np.random.default_rng(3)
    specs = [ObjectSpec(shape, "red", "large", "striped") for shape in SHAPES[:8]]
    scene = render_scene(rng, specs, 200)
    assert 1 <= len(scene.objects) <= 8
    for obj in scene.objects:
        x1, y1, x2, y2 = obj.box
        assert 0 <= x1 < x2 <= 200 and 0 <= y1 < y2 <= 200
        assert obj.visible >= 1 - MAX_OCCLUDED - 1e-6
