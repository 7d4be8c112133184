"""Tests of the ATSS anchors: legacy templates, y-major grid order, and the official reference anchors."""

from __future__ import annotations

import numpy as np
import torch

from glip.config import get_config
from glip.modeling.anchors import cell_anchor, grid_anchors, level_anchors
from support import require_reference

SIZES = (64, 128, 256, 512, 1024)
STRIDES = (8, 16, 32, 64, 128)
TEMPLATES = [
    [-28.0, -28.0, 35.0, 35.0],
    [-56.0, -56.0, 71.0, 71.0],
    [-112.0, -112.0, 143.0, 143.0],
    [-224.0, -224.0, 287.0, 287.0],
    [-448.0, -448.0, 575.0, 575.0],
]


def test_cell_anchors_are_the_official_templates() -> None:
    for size, stride, expected in zip(SIZES, STRIDES, TEMPLATES):
        template = cell_anchor(size, stride)
        assert template.shape == (1, 4) and template.dtype == torch.float32
        assert template[0].tolist() == expected
        # "+1" width: x2 - x1 + 1 = size; centre (stride - 1) / 2.
        assert (template[0, 2] - template[0, 0] + 1).item() == size
        assert ((template[0, 0] + template[0, 2]) / 2).item() == (stride - 1) / 2


def test_presets_use_these_sizes_and_strides() -> None:
    for name in ("glip-t", "glip-t-a", "glip-l", "glip-tiny"):
        head = get_config(name).head
        assert tuple(head.anchor_sizes) == SIZES and tuple(head.anchor_strides) == STRIDES


def test_grid_is_y_major() -> None:
    height, width, stride = 3, 4, 8
    anchors = grid_anchors(64, stride, height, width)
    assert anchors.shape == (height * width, 4)
    template = torch.tensor(TEMPLATES[0])
    for y in range(height):
        for x in range(width):
            shift = torch.tensor([x * stride, y * stride, x * stride, y * stride], dtype=torch.float32)
            assert torch.equal(anchors[y * width + x], template + shift), (y, x)


def test_level_anchors_follow_the_feature_shapes() -> None:
    shapes = [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    anchors = level_anchors(SIZES, STRIDES, shapes)
    assert [tuple(a.shape) for a in anchors] == [(h * w, 4) for h, w in shapes]
    for level, template in enumerate(TEMPLATES):
        assert anchors[level][0].tolist() == template
    # Last anchor of P4 (y=3, x=5): template + 16 * (5, 3, 5, 3).
    assert anchors[1][-1].tolist() == [-56.0 + 80, -56.0 + 48, 71.0 + 80, 71.0 + 48]


def test_anchors_equal_the_official_ones_for_800x800() -> None:
    arrays = np.load(require_reference("glip_t", "case_a", "inference.npz"))
    sides = [100, 50, 25, 13, 7]  # ceil(800 / stride)
    anchors = level_anchors(SIZES, STRIDES, [(side, side) for side in sides])
    for level, (side, ours) in enumerate(zip(sides, anchors)):
        name = f"anchors_P{level + 3}"
        assert tuple(arrays[f"{name}__shape"]) == (side * side, 4) == tuple(ours.shape)
        np.testing.assert_array_equal(ours[:8].numpy(), arrays[f"{name}__first8"])
        rows = torch.from_numpy(arrays[f"{name}__rows_idx"])
        np.testing.assert_array_equal(ours[rows].numpy(), arrays[f"{name}__rows"])
