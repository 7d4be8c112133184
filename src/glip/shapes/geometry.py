"""Outlines of the 16 shapes, rasterised with anti-aliasing into a small square patch.

Every outline is defined in unit coordinates (y down) and fits ``[-1, 1]^2`` unrotated, with its
larger extent touching the border, so a shape drawn with ``diameter`` d spans d pixels along its
longer unrotated side. Polygons are drawn by PIL on a patch supersampled ``SUPERSAMPLE`` times; the
ring and the crescent are two discs, one cut out of the other. The patch's coverage gives the alpha
channel, and the supersampled drawing gives the tight box to a quarter pixel.

Example:
    >>> drawn = draw_shape("star", diameter=40.0, angle=30.0)
    >>> drawn.alpha.shape == (drawn.side, drawn.side)
    True
    >>> 0 <= drawn.box[0] < drawn.box[2] <= drawn.side
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4  # anti-aliasing factor; boxes are exact to 1 / SUPERSAMPLE pixel

# Rotation range (degrees, symmetric) per shape. Limited where a large rotation would turn the shape
# into another one (a square at 45 degrees reads as a diamond, a cross as an "x") or look odd (heart).
ROTATION_RANGE: dict[str, float] = {
    "circle": 0.0, "ring": 0.0,
    "square": 20.0, "diamond": 15.0, "cross": 20.0, "heart": 25.0, "trapezoid": 25.0,
    "triangle": 180.0, "star": 180.0, "hexagon": 180.0, "pentagon": 180.0, "octagon": 180.0,
    "crescent": 180.0, "arrow": 180.0, "ellipse": 180.0, "rectangle": 180.0,
}

RING_INNER_RADIUS = 0.58  # of the outer radius: the hole must read as a hole when the ring is small
CRESCENT_CUT_RADIUS = 0.8  # the disc cut out of a unit disc to make the crescent ...
CRESCENT_CUT_OFFSET = 0.45  # ... and how far its centre sits from the unit disc's centre


@dataclass(frozen=True)
class DrawnShape:
    """A shape rasterised into a ``side`` x ``side`` patch whose centre is the shape's centre.

    Attributes:
        side: patch width and height in pixels.
        alpha: ``[side, side]`` float32 coverage in ``[0, 1]``.
        box: tight ``(x1, y1, x2, y2)`` box of the drawn pixels, in patch pixels (continuous).
        area: drawn area in pixels (fractional, from the supersampled drawing).
    """

    side: int
    alpha: np.ndarray
    box: tuple[float, float, float, float]
    area: float


def _regular_polygon(sides: int, phase: float) -> np.ndarray:
    angles = phase + 2.0 * math.pi * np.arange(sides) / sides
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + math.pi * np.arange(2 * points) / points
    radius = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _heart(num_points: int = 96) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, num_points, endpoint=False)
    x = 16.0 * np.sin(t) ** 3
    y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1)


def _normalise(vertices: np.ndarray) -> np.ndarray:
    """Centre the outline's box on the origin and scale its larger side to 2."""
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    return (vertices - (low + high) / 2) / ((high - low).max() / 2)


@lru_cache(maxsize=None)
def polygon(shape: str) -> np.ndarray | None:
    """``[K, 2]`` unit outline of a polygonal shape; None for the ring and the crescent."""
    half_arm = 0.34
    outlines = {
        "circle": _regular_polygon(96, 0.0),
        "ellipse": _regular_polygon(96, 0.0) * np.array([1.0, 0.55]),
        "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64),
        "rectangle": np.array([[-1, -0.5], [1, -0.5], [1, 0.5], [-1, 0.5]]),
        "diamond": np.array([[0, -1], [0.62, 0], [0, 1], [-0.62, 0]]),
        "trapezoid": np.array([[-0.5, -0.6], [0.5, -0.6], [1, 0.6], [-1, 0.6]]),
        "triangle": _regular_polygon(3, -math.pi / 2),
        "pentagon": _regular_polygon(5, -math.pi / 2),
        "hexagon": _regular_polygon(6, 0.0),
        "octagon": _regular_polygon(8, math.pi / 8),
        "star": _star(),
        "heart": _heart(),
        "cross": np.array([[-half_arm, -1], [half_arm, -1], [half_arm, -half_arm], [1, -half_arm],
                           [1, half_arm], [half_arm, half_arm], [half_arm, 1], [-half_arm, 1],
                           [-half_arm, half_arm], [-1, half_arm], [-1, -half_arm], [-half_arm, -half_arm]]),
        "arrow": np.array([[-1, -0.2], [0.15, -0.2], [0.15, -0.58], [1, 0], [0.15, 0.58],
                           [0.15, 0.2], [-1, 0.2]]),
    }
    if shape in ("ring", "crescent"):
        return None
    if shape not in outlines:
        raise ValueError(f"unknown shape {shape!r}")
    return _normalise(outlines[shape].astype(np.float64))


def patch_side(shape: str, diameter: float) -> int:
    """Side of a patch holding ``shape`` at any rotation, with a pixel of margin on each side."""
    outline = polygon(shape)
    reach = 1.0 if outline is None else float(np.linalg.norm(outline, axis=1).max())
    return int(math.ceil(diameter * reach)) + 2


def _draw_discs(draw: ImageDraw.ImageDraw, shape: str, centre: float, radius: float, angle: float) -> None:
    def disc(cx: float, cy: float, r: float, fill: int) -> None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)

    disc(centre, centre, radius, 255)
    if shape == "ring":
        disc(centre, centre, radius * RING_INNER_RADIUS, 0)
    else:  # crescent: the cut disc is offset along the rotation direction
        offset = radius * CRESCENT_CUT_OFFSET
        disc(centre + offset * math.cos(angle), centre + offset * math.sin(angle),
             radius * CRESCENT_CUT_RADIUS, 0)


def draw_shape(shape: str, diameter: float, angle: float) -> DrawnShape:
    """Rasterise ``shape`` of ``diameter`` pixels rotated by ``angle`` degrees (clockwise on screen)."""
    side = patch_side(shape, diameter)
    size = side * SUPERSAMPLE
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    centre, radius, theta = size / 2, diameter * SUPERSAMPLE / 2, math.radians(angle)
    outline = polygon(shape)
    if outline is None:
        _draw_discs(draw, shape, centre, radius, theta)
    else:
        cos, sin = math.cos(theta), math.sin(theta)
        rotated = outline @ np.array([[cos, sin], [-sin, cos]])  # row vectors: [x, y] @ R^T
        points = centre + radius * rotated
        draw.polygon([tuple(point) for point in points.tolist()], fill=255)
    mask = np.asarray(canvas) > 127  # [size, size]
    alpha = mask.reshape(side, SUPERSAMPLE, side, SUPERSAMPLE).mean(axis=(1, 3), dtype=np.float32)
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    box = (int(cols[0]) / SUPERSAMPLE, int(rows[0]) / SUPERSAMPLE,
           (int(cols[-1]) + 1) / SUPERSAMPLE, (int(rows[-1]) + 1) / SUPERSAMPLE)
    return DrawnShape(side, alpha, box, float(mask.sum()) / SUPERSAMPLE**2)
