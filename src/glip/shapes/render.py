"""Pixels of a scene: textured or noisy backgrounds, and objects painted solid, striped or dotted.

Backgrounds stay in muted mid tones (grey level 85-170, slightly tinted) so that every object
colour, white and black included, stands out. A striped or dotted object keeps a border of its own
colour and carries its pattern in a second tone of the same colour (lighter for dark colours,
darker for light ones), so its colour name stays unambiguous.

Example:
    >>> rng = np.random.default_rng(0)
    >>> background(rng, 64).shape
    (64, 64, 3)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from glip.shapes.geometry import DrawnShape
from glip.shapes.vocabulary import COLOURS

BACKGROUND_KINDS: tuple[str, ...] = ("noise", "gradient", "clouds", "texture")
COLOUR_JITTER = 12  # per-channel jitter of an object's colour
PATTERN_TONE_MIX = 0.55  # how far the pattern tone moves from the colour towards white or black


def _base_colour(rng: np.random.Generator) -> np.ndarray:
    grey = rng.uniform(85.0, 170.0)
    return (grey + rng.uniform(-25.0, 25.0, size=3)).astype(np.float32)


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    return rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = np.arange(size, dtype=np.float32)
    return coords[None, :], coords[:, None]  # x [1, S], y [S, 1]


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    t = (np.cos(theta) * x + np.sin(theta) * y) / size  # [S, S], roughly in [-1.4, 1.4]
    t = (t - t.min()) / (t.max() - t.min())
    start, end = _base_colour(rng), _base_colour(rng)
    return start + t[:, :, None] * (end - start)


def _clouds(rng: np.random.Generator, size: int) -> np.ndarray:
    cells = int(rng.integers(3, 8))
    coarse = rng.standard_normal((cells, cells, 3)).astype(np.float32) * np.float32(rng.uniform(8.0, 18.0))
    channels = [np.asarray(Image.fromarray(coarse[:, :, c], mode="F").resize((size, size), Image.BICUBIC))
                for c in range(3)]
    return _base_colour(rng) + np.stack(channels, axis=2)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    period = rng.uniform(6.0, 24.0)
    theta = rng.uniform(0.0, np.pi)
    u = np.cos(theta) * x + np.sin(theta) * y
    v = -np.sin(theta) * x + np.cos(theta) * y
    kind = rng.integers(3)
    if kind == 0:  # stripes
        pattern = (u // period) % 2
    elif kind == 1:  # checks
        pattern = ((u // period) + (v // period)) % 2
    else:  # grid lines
        pattern = np.maximum((u % period) < 2.0, (v % period) < 2.0).astype(np.float32)
    contrast = rng.uniform(10.0, 24.0) * rng.choice([-1.0, 1.0], size=3).astype(np.float32)
    return _base_colour(rng) + pattern[:, :, None].astype(np.float32) * contrast


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``[size, size, 3]`` float32 background in ``[0, 255]``, of a randomly chosen kind."""
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    if kind == "noise":
        image = _base_colour(rng) + _noise(rng, size, rng.uniform(4.0, 14.0))
    elif kind == "gradient":
        image = _gradient(rng, size) + _noise(rng, size, rng.uniform(2.0, 8.0))
    elif kind == "clouds":
        image = _clouds(rng, size) + _noise(rng, size, rng.uniform(2.0, 8.0))
    else:
        image = _texture(rng, size) + _noise(rng, size, rng.uniform(2.0, 8.0))
    return np.clip(image, 0.0, 255.0, out=image)


def pattern_tone(colour: np.ndarray) -> np.ndarray:
    """The second tone of a striped or dotted object: lighter for dark colours, darker for light ones."""
    luminance = float(colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    target = 0.0 if luminance > 150.0 else 255.0
    return colour + PATTERN_TONE_MIX * (target - colour)


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary erosion by a 3x3 square, ``steps`` times (pixels outside the patch count as empty)."""
    inner = mask.copy()
    for _ in range(steps):
        padded = np.pad(inner, 1)
        inner = padded[1:-1, 1:-1].copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                inner &= padded[dy:dy + inner.shape[0], dx:dx + inner.shape[1]]
    return inner


def _pattern(fill: str, side: int, diameter: float, angle: float) -> np.ndarray:
    """``[side, side]`` bool: where the second tone goes, in the object's rotated frame."""
    x, y = _grid(side)
    theta = np.radians(angle + 45.0)
    u = np.cos(theta) * x + np.sin(theta) * y
    if fill == "striped":
        period = max(6.0, 0.16 * diameter)
        return (u % period) < 0.42 * period
    v = -np.sin(theta) * x + np.cos(theta) * y
    period = max(7.0, 0.2 * diameter)
    du = (u % period) - period / 2
    dv = (v % period) - period / 2
    return du * du + dv * dv < (0.3 * period) ** 2


def paint(rng: np.random.Generator, drawn: DrawnShape, colour: str, fill: str, diameter: float,
          angle: float) -> np.ndarray:
    """``[side, side, 3]`` float32 colours of an object (meaningful where ``drawn.alpha`` > 0)."""
    base = np.asarray(COLOURS[colour], dtype=np.float32) + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, size=3)
    base = np.clip(base, 0.0, 255.0).astype(np.float32)
    pixels = np.broadcast_to(base, (drawn.side, drawn.side, 3)).copy()
    if fill != "solid":
        border = max(1, round(0.05 * diameter))
        interior = _erode(drawn.alpha >= 0.5, border)
        pixels[interior & _pattern(fill, drawn.side, diameter, angle)] = pattern_tone(base)
    return pixels


def composite(image: np.ndarray, pixels: np.ndarray, alpha: np.ndarray, left: int, top: int) -> None:
    """Alpha-blend a patch into ``image`` in place, its top-left at ``(left, top)``; clipped to the image."""
    height, width = image.shape[:2]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + alpha.shape[1], width), min(top + alpha.shape[0], height)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None]  # [h, w, 1]
    region = image[y0:y1, x0:x1]
    region += a * (pixels[y0 - top:y1 - top, x0 - left:x1 - left] - region)
