"""Words of the shapes world: shapes, colours, sizes, fills, synonyms, and which split uses which.

The vocabulary is split so that each test measures one kind of generalisation:

- ``DETECTION_SHAPES`` (10) are trained as detection classes (``det-train``) and appear in the
  grounding captions (``ground-train``).
- ``GROUNDING_ONLY_SHAPES`` (3) appear only in grounding captions; ``zeroshot-grounded`` tests
  them as detection classes.
- ``NOVEL_SHAPES`` (3) never appear in any gold training image or text; ``zeroshot-novel`` tests them.
  Only the ``web`` split (image-caption pairs without boxes, for self-training; see
  ``glip.shapes.web``) names them, in captions.
- ``SYNONYMS`` name trained shapes with words never used in training; ``synonyms`` tests them.

Example:
    >>> SYNONYMS["disk"]
    'circle'
    >>> SPLITS["det-train"].categories[:3]
    ('circle', 'square', 'triangle')
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "heart", "cross", "diamond", "hexagon", "pentagon",
    "ring", "crescent", "arrow", "ellipse", "rectangle", "trapezoid", "octagon",
)
DETECTION_SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "ring", "arrow", "rectangle",
)
GROUNDING_ONLY_SHAPES: tuple[str, ...] = ("heart", "crescent", "pentagon")
NOVEL_SHAPES: tuple[str, ...] = ("ellipse", "trapezoid", "octagon")
TRAINED_SHAPES: tuple[str, ...] = DETECTION_SHAPES + GROUNDING_ONLY_SHAPES

PLURALS: dict[str, str] = {shape: shape + "s" for shape in SHAPES} | {"cross": "crosses"}

# Saturated, well separated colours; each object jitters its colour a little (see render.py).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "yellow": (245, 220, 30),
    "orange": (245, 135, 20),
    "purple": (140, 45, 185),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SIZES: tuple[str, ...] = ("small", "large")
FILLS: tuple[str, ...] = ("solid", "striped", "dotted")
ATTRIBUTES: tuple[str, ...] = ("size", "colour", "fill")  # also the word order in phrases

# Prompt word -> trained shape it names. None of these words (nor their plurals) is ever written
# in a training caption or category name; tests/shapes checks it.
SYNONYMS: dict[str, str] = {
    "disk": "circle",
    "rhombus": "diamond",
    "plus sign": "cross",
    "donut": "ring",
    "oblong": "rectangle",
    "pointer": "arrow",
}

COUNT_WORDS: tuple[str, ...] = ("", "", "two", "three", "four", "five", "six", "seven", "eight")
RELATIONS: tuple[str, ...] = ("above", "below", "to the left of", "to the right of")

# Words that no training text (det-train category names, ground-train captions) may contain.
TRAINING_FORBIDDEN_WORDS: tuple[str, ...] = tuple(
    sorted({word for name in NOVEL_SHAPES + tuple(SYNONYMS) for word in name.split()})
)


@dataclass(frozen=True)
class SplitSpec:
    """What one split draws and writes.

    Attributes:
        name: the split's name (its directory under the output directory).
        shapes: the shapes its images may contain.
        categories: COCO category names, in id order (ids start at 1).
        synonym_of: for each category, the shape it names (equal to the name except in ``synonyms``).
        grounding: whether the split writes ``grounding.jsonl`` (captions with phrase spans).
        min_objects: fewest objects an image is asked for.
        max_objects: most objects an image is asked for.
        training: whether its text is training text (vocabulary rules apply).
    """

    name: str
    shapes: tuple[str, ...]
    categories: tuple[str, ...]
    synonym_of: tuple[str, ...]
    grounding: bool = False
    min_objects: int = 1
    max_objects: int = 8
    training: bool = False

    def category_id(self, shape: str) -> int:
        """COCO category id (1-based) of the category naming ``shape``."""
        return self.synonym_of.index(shape) + 1


def _detection_split(name: str, shapes: tuple[str, ...], training: bool = False) -> SplitSpec:
    return SplitSpec(name, shapes, shapes, shapes, training=training)


SPLITS: dict[str, SplitSpec] = {
    "det-train": _detection_split("det-train", DETECTION_SHAPES, training=True),
    "ground-train": SplitSpec("ground-train", TRAINED_SHAPES, TRAINED_SHAPES, TRAINED_SHAPES,
                              grounding=True, training=True),
    # Attribute binding in training: a group of 2-4 objects of one shape plus others (2-7 in all), each
    # named in one caption by a phrase that fits it alone ("a red star and a blue striped star").
    "attributes-train": SplitSpec("attributes-train", TRAINED_SHAPES, TRAINED_SHAPES, TRAINED_SHAPES,
                                  grounding=True, min_objects=2, max_objects=7, training=True),
    "det-test": _detection_split("det-test", DETECTION_SHAPES),
    "zeroshot-grounded": _detection_split("zeroshot-grounded", GROUNDING_ONLY_SHAPES),
    "zeroshot-novel": _detection_split("zeroshot-novel", NOVEL_SHAPES),
    "synonyms": SplitSpec("synonyms", tuple(SYNONYMS.values()), tuple(SYNONYMS), tuple(SYNONYMS.values())),
    "attributes": SplitSpec("attributes", TRAINED_SHAPES, TRAINED_SHAPES, TRAINED_SHAPES,
                            grounding=True, min_objects=2, max_objects=4),
}
