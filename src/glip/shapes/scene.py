"""One scene: objects with attributes, placed on a background with limited occlusion.

Objects are painted in order, a later one on top of the earlier ones. A placement is rejected when
it would leave an earlier object with less than ``1 - MAX_OCCLUDED`` of its pixels visible, or when
its box would cover more than ``MAX_BOX_COVERED`` of an earlier object's box (so that a large object
never hides most of a small one's box, e.g. a ring drawn around it); after
``PLACEMENT_TRIES`` rejected placements the object is dropped, so a scene may hold fewer objects
than asked for (never fewer than one: the first object always fits). Every object lies fully
inside the image. Boxes are the tight boxes of the whole drawn shape, occluded parts included;
``Scene.owner`` gives each object's visible pixels (its instance mask).

Example:
    >>> rng = np.random.default_rng(0)
    >>> scene = render_scene(rng, [ObjectSpec("star", "red", "small", "solid")], 128)
    >>> scene.image.shape, len(scene.objects)
    ((128, 128, 3), 1)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from glip.shapes.geometry import ROTATION_RANGE, draw_shape
from glip.shapes.render import background, composite, paint
from glip.shapes.vocabulary import ATTRIBUTES, COLOURS, FILLS, SIZES

MAX_OCCLUDED = 0.3  # most of an object's pixels that later objects may cover
MAX_BOX_COVERED = 0.5  # most of an object's box that the box of one later object may cover
PLACEMENT_TRIES = 40
# Diameter as a fraction of the image side: far apart, so "small" and "large" are never in doubt.
DIAMETER_RANGE: dict[str, tuple[float, float]] = {"small": (0.08, 0.12), "large": (0.19, 0.28)}


@dataclass(frozen=True)
class ObjectSpec:
    """What to draw: a shape and its three attributes."""

    shape: str
    colour: str
    size: str
    fill: str

    def attribute(self, name: str) -> str:
        """The value of ``"size"``, ``"colour"`` or ``"fill"``."""
        return getattr(self, name)


@dataclass(frozen=True)
class SceneObject:
    """A drawn object.

    Attributes:
        spec: shape, colour, size and fill.
        box: tight ``(x1, y1, x2, y2)`` box of the whole shape in image pixels.
        area: pixels of the whole shape.
        visible: fraction of its pixels not covered by later objects.
        angle: rotation in degrees (clockwise).
        diameter: its longer unrotated side in pixels.
    """

    spec: ObjectSpec
    box: tuple[float, float, float, float]
    area: float
    visible: float
    angle: float
    diameter: float

    def to_dict(self) -> dict:
        record = asdict(self.spec)
        record.update(bbox=[round(v, 2) for v in self.box], area=round(self.area, 2),
                      visible=round(self.visible, 3), angle=round(self.angle, 1),
                      diameter=round(self.diameter, 1))
        return record


@dataclass
class Scene:
    """An image and the objects drawn on it, in drawing order.

    Attributes:
        image: ``[H, W, 3]`` uint8.
        objects: the drawn objects, in drawing order.
        owner: ``[H, W]`` int16, at each pixel the index of the object on top, or -1. A pixel
            belongs to an object when the object covers at least half of it (the same 0.5 of the
            4x supersampled drawing that decides its box and its visible fraction); a later
            object that covers it takes it over. A ring's hole and a crescent's bite are not the
            object's; a striped or dotted object's pattern is.
    """

    image: np.ndarray
    objects: list[SceneObject]
    owner: np.ndarray

    def visible_mask(self, index: int) -> np.ndarray:
        """``[H, W]`` bool: the pixels of object ``index`` that no later object hides."""
        return self.owner == index


def random_spec(rng: np.random.Generator, shapes: tuple[str, ...]) -> ObjectSpec:
    """A shape from ``shapes`` with uniformly drawn colour, size and fill."""
    colours = tuple(COLOURS)
    return ObjectSpec(shapes[int(rng.integers(len(shapes)))], colours[int(rng.integers(len(colours)))],
                      SIZES[int(rng.integers(len(SIZES)))], FILLS[int(rng.integers(len(FILLS)))])


def attribute_specs(rng: np.random.Generator, shapes: tuple[str, ...], count: int) -> list[ObjectSpec]:
    """Up to ``count`` objects of one shape, pairwise different in at least one attribute.

    A random non-empty subset of the attributes varies between the objects; the others are shared,
    so that telling the objects apart needs exactly the varying attributes.
    """
    shape = shapes[int(rng.integers(len(shapes)))]
    values = {"size": SIZES, "colour": tuple(COLOURS), "fill": FILLS}
    while True:
        varying = [name for name in ATTRIBUTES if rng.random() < 0.5]
        if varying:
            break
    shared = {name: values[name][int(rng.integers(len(values[name])))] for name in ATTRIBUTES}
    combos = math.prod(len(values[name]) for name in varying)
    specs: list[ObjectSpec] = []
    while len(specs) < min(count, combos):
        attributes = dict(shared)
        for name in varying:
            attributes[name] = values[name][int(rng.integers(len(values[name])))]
        spec = ObjectSpec(shape, **attributes)
        if spec not in specs:
            specs.append(spec)
    return specs


def _box_covered(box: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """Fraction of each earlier box (``[N, 4]``) that ``box`` (``[4]``) covers."""
    width = np.clip(np.minimum(box[2], earlier[:, 2]) - np.maximum(box[0], earlier[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], earlier[:, 3]) - np.maximum(box[1], earlier[:, 1]), 0, None)
    return width * height / ((earlier[:, 2] - earlier[:, 0]) * (earlier[:, 3] - earlier[:, 1]))


def _place(rng: np.random.Generator, owner: np.ndarray, mask: np.ndarray, box: tuple[float, ...],
           objects: list[SceneObject], visible: list[float],
           areas: list[float]) -> tuple[int, int, np.ndarray] | None:
    """Find a top-left for a patch so its box is inside the image and no earlier object loses too much.

    Returns ``(left, top, covered)`` with ``covered[j]`` the pixels of object ``j`` it hides, or None.
    """
    height, width = owner.shape
    x_low, x_high = math.ceil(-box[0]), math.floor(width - box[2])
    y_low, y_high = math.ceil(-box[1]), math.floor(height - box[3])
    if x_low > x_high or y_low > y_high:
        return None
    earlier = np.array([o.box for o in objects], dtype=np.float64).reshape(-1, 4)
    for _ in range(PLACEMENT_TRIES):
        left, top = int(rng.integers(x_low, x_high + 1)), int(rng.integers(y_low, y_high + 1))
        placed = np.asarray(box) + np.array([left, top, left, top])
        if len(earlier) and _box_covered(placed, earlier).max() > MAX_BOX_COVERED:
            continue
        region, inside = _window(owner, mask, left, top)
        covered = np.bincount(region[inside] + 1, minlength=len(areas) + 1)[1:]
        remaining = np.asarray(visible) - covered
        if np.all(remaining >= (1.0 - MAX_OCCLUDED) * np.asarray(areas)):
            return left, top, covered
    return None


def _window(owner: np.ndarray, mask: np.ndarray, left: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``owner`` under a patch at ``(left, top)`` and the patch mask clipped to it (views)."""
    height, width = owner.shape
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + mask.shape[1], width), min(top + mask.shape[0], height)
    return owner[y0:y1, x0:x1], mask[y0 - top:y1 - top, x0 - left:x1 - left]


def render_scene(rng: np.random.Generator, specs: list[ObjectSpec], image_size: int) -> Scene:
    """Draw ``specs`` in order on a random background; objects that find no place are dropped."""
    image = background(rng, image_size)
    owner = np.full((image_size, image_size), -1, dtype=np.int16)  # index of the object on top, or -1
    objects: list[SceneObject] = []
    visible: list[float] = []  # pixels of each object still on top
    areas: list[float] = []
    for spec in specs:
        low, high = DIAMETER_RANGE[spec.size]
        diameter = rng.uniform(low, high) * image_size
        spread = ROTATION_RANGE[spec.shape]
        angle = rng.uniform(-spread, spread) if spread else 0.0
        drawn = draw_shape(spec.shape, diameter, angle)
        mask = drawn.alpha >= 0.5
        placed = _place(rng, owner, mask, drawn.box, objects, visible, areas)
        if placed is None:
            continue
        left, top, covered = placed
        composite(image, paint(rng, drawn, spec.colour, spec.fill, diameter, angle), drawn.alpha, left, top)
        region, inside = _window(owner, mask, left, top)
        region[inside] = len(objects)
        visible = [v - float(c) for v, c in zip(visible, covered)] + [float(mask.sum())]
        areas.append(float(mask.sum()))
        box = (drawn.box[0] + left, drawn.box[1] + top, drawn.box[2] + left, drawn.box[3] + top)
        objects.append(SceneObject(spec, box, drawn.area, 1.0, angle, diameter))
    objects = [SceneObject(o.spec, o.box, o.area, v / a, o.angle, o.diameter)
               for o, v, a in zip(objects, visible, areas)]
    return Scene(np.rint(image).astype(np.uint8), objects, owner)
