"""Questions about a scene whose answers follow exactly from it (the ``vqa`` split).

Each image gets one question of each kind that its scene allows, and two existence questions (one
answered yes, one no, so yes and no are balanced exactly):

- ``count``: "how many stars are there?" -> "2" (a shape in the scene, a colour, or now and then a
  shape that is absent -> "0");
- ``color``: "what color is the small star?" -> "red", asked only of an object that a phrase of
  its shape and other attributes (size, fill) names alone;
- ``shape``: "what shape is the red object?" -> "star", when the attributes name one object;
- ``fill``: "is the hexagon striped?" -> "yes" or "no" (its true fill or another, half and half);
- ``size``: "what size is the blue ring?" -> "small" or "large";
- ``exist``: "is there a hexagon?" / "is there a red star?" -> "yes" / "no";
- ``relation``: "what is to the left of the blue star?" -> "circle", asked only when exactly one
  object's centre lies on that side of the referent's centre and its whole box lies beyond the
  referent's box (the captions' relation, `glip.shapes.captions.relations`), so no other object
  could be meant.

The phrase naming an object uses the fewest attributes that tell it apart (a random one of the
smallest sets), like the referring phrases of the ``attributes`` split. Questions and answers name
only trained shapes, in the words of the training captions (no synonyms); answers are already in
the normal form of the VQA evaluation (digits, no articles).

Example:
    >>> from glip.shapes.scene import ObjectSpec, SceneObject
    >>> star = SceneObject(ObjectSpec("star", "red", "small", "solid"), (10, 10, 30, 30), 300.0, 1.0, 0.0, 20.0)
    >>> ring = SceneObject(ObjectSpec("ring", "blue", "large", "dotted"), (60, 10, 110, 60), 1900.0, 1.0, 0.0, 50.0)
    >>> questions = scene_questions(np.random.default_rng(0), [star, ring])
    >>> [(q.question, q.answer) for q in questions if q.question_type in ("count", "relation")]
    [('how many stars are there?', '1'), ('what is to the left of the ring?', 'star')]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glip.shapes.captions import article, relations
from glip.shapes.scene import ObjectSpec, SceneObject
from glip.shapes.vocabulary import ATTRIBUTES, COLOURS, FILLS, PLURALS, RELATIONS, SIZES, TRAINED_SHAPES

QUESTION_TYPES: tuple[str, ...] = ("count", "color", "shape", "fill", "size", "exist", "relation")
ANSWER_TYPES: dict[str, str] = {"count": "number", "fill": "yes/no", "exist": "yes/no"}  # others: "other"
ABSENT_COUNT_PROBABILITY = 0.15  # share of count questions about a shape that is not there ("0")
COLOUR_COUNT_PROBABILITY = 0.3  # share of count questions about a colour ("how many red objects")


@dataclass(frozen=True)
class SceneQuestion:
    """One question about a scene, with its one right answer."""

    question: str
    answer: str
    question_type: str  # one of QUESTION_TYPES

    @property
    def answer_type(self) -> str:
        """The VQA2.0 answer type: ``"yes/no"``, ``"number"`` or ``"other"``."""
        return ANSWER_TYPES.get(self.question_type, "other")


def telling_attributes(specs: list[ObjectSpec], index: int, allowed: tuple[str, ...],
                       by_shape: bool = True) -> list[tuple[str, ...]]:
    """The smallest sets of ``allowed`` attributes that, with the shape (``by_shape``), match object
    ``index`` alone; empty when no such set exists."""
    target = specs[index]
    for size in range(len(allowed) + 1):
        found = []
        for names in itertools.combinations(allowed, size):
            members = [i for i, spec in enumerate(specs) if (not by_shape or spec.shape == target.shape)
                       and all(spec.attribute(name) == target.attribute(name) for name in names)]
            if members == [index]:
                found.append(names)
        if found:
            return found
    return []


def describe(spec: ObjectSpec, attributes: tuple[str, ...], noun: str | None = None) -> str:
    """``"small red star"`` (attributes in the captions' order: size, colour, fill), or with ``noun``
    in place of the shape, ``"red object"``."""
    words = [spec.attribute(name) for name in ATTRIBUTES if name in attributes]
    return " ".join(words + [noun or spec.shape])


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _referent(rng: np.random.Generator, specs: list[ObjectSpec], index: int, allowed: tuple[str, ...],
              by_shape: bool = True) -> tuple[str, ...] | None:
    choices = telling_attributes(specs, index, allowed, by_shape)
    return _pick(rng, choices) if choices else None


def count_question(rng: np.random.Generator, specs: list[ObjectSpec]) -> SceneQuestion:
    draw = rng.random()
    if draw < ABSENT_COUNT_PROBABILITY:
        shape = _pick(rng, [s for s in TRAINED_SHAPES if s not in {spec.shape for spec in specs}])
        return SceneQuestion(f"how many {PLURALS[shape]} are there?", "0", "count")
    if draw < ABSENT_COUNT_PROBABILITY + COLOUR_COUNT_PROBABILITY:
        colour = _pick(rng, sorted({spec.colour for spec in specs}))
        count = sum(spec.colour == colour for spec in specs)
        return SceneQuestion(f"how many {colour} objects are there?", str(count), "count")
    shape = _pick(rng, sorted({spec.shape for spec in specs}))
    count = sum(spec.shape == shape for spec in specs)
    template = _pick(rng, ["how many {} are there?", "how many {} can you see?", "how many {} are in the picture?"])
    return SceneQuestion(template.format(PLURALS[shape]), str(count), "count")


def attribute_question(rng: np.random.Generator, specs: list[ObjectSpec], asked: str) -> SceneQuestion | None:
    """A ``color``, ``size`` or ``fill`` question about an object its other attributes name alone."""
    others = tuple(name for name in ATTRIBUTES if name != asked)
    candidates = [(i, names) for i in range(len(specs)) if (names := _referent(rng, specs, i, others)) is not None]
    if not candidates:
        return None
    index, names = _pick(rng, candidates)
    spec, phrase = specs[index], describe(specs[index], names)
    if asked == "colour":
        template = _pick(rng, ["what color is the {}?", "what is the color of the {}?"])
        return SceneQuestion(template.format(phrase), spec.colour, "color")
    if asked == "size":
        template = _pick(rng, ["what size is the {}?", "is the {} small or large?"])
        return SceneQuestion(template.format(phrase), spec.size, "size")
    fill = spec.fill if rng.random() < 0.5 else _pick(rng, [f for f in FILLS if f != spec.fill])
    return SceneQuestion(f"is the {phrase} {fill}?", "yes" if fill == spec.fill else "no", "fill")


def shape_question(rng: np.random.Generator, specs: list[ObjectSpec]) -> SceneQuestion | None:
    candidates = [(i, names) for i in range(len(specs))
                  if (names := _referent(rng, specs, i, ATTRIBUTES, by_shape=False))]  # at least one attribute
    if not candidates:
        return None
    index, names = _pick(rng, candidates)
    template = _pick(rng, ["what shape is the {}?", "what kind of shape is the {}?"])
    return SceneQuestion(template.format(describe(specs[index], names, noun="object")), specs[index].shape, "shape")


def existence_questions(rng: np.random.Generator, specs: list[ObjectSpec]) -> list[SceneQuestion]:
    """One question answered yes and one answered no, in random order."""
    present = _pick(rng, specs)
    names = tuple(name for name in ATTRIBUTES if rng.random() < 0.25)[:1]  # "a star" or "a red star"
    yes = describe(present, names)
    if rng.random() < 0.5:  # an absent shape
        no = _pick(rng, [shape for shape in TRAINED_SHAPES if shape not in {spec.shape for spec in specs}])
    else:  # a present shape with a value of an attribute that none of its objects has
        no = _absent_variant(rng, specs) or _pick(rng, [s for s in TRAINED_SHAPES if s not in {x.shape for x in specs}])
    questions = [SceneQuestion(f"is there {article(yes)} {yes}?", "yes", "exist"),
                 SceneQuestion(f"is there {article(no)} {no}?", "no", "exist")]
    return questions if rng.random() < 0.5 else questions[::-1]


def _absent_variant(rng: np.random.Generator, specs: list[ObjectSpec]) -> str | None:
    """E.g. ``"blue star"`` when the scene has stars but no blue one (None if every value is taken)."""
    values = {"size": SIZES, "colour": tuple(COLOURS), "fill": FILLS}
    shape = _pick(rng, sorted({spec.shape for spec in specs}))
    name = _pick(rng, list(ATTRIBUTES))
    taken = {spec.attribute(name) for spec in specs if spec.shape == shape}
    free = [value for value in values[name] if value not in taken]
    return f"{_pick(rng, free)} {shape}" if free else None


def _centre(box: tuple[float, ...]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _beyond(relation: str, centre: tuple[float, float], reference: tuple[float, float]) -> bool:
    """Whether ``centre`` lies on the ``relation`` side of ``reference`` (the loose sense)."""
    return {"above": centre[1] < reference[1], "below": centre[1] > reference[1],
            "to the left of": centre[0] < reference[0], "to the right of": centre[0] > reference[0]}[relation]


def relation_question(rng: np.random.Generator, objects: list[SceneObject]) -> SceneQuestion | None:
    """ "what is <relation> the <referent>?" when exactly one object answers it, beyond doubt."""
    specs = [o.spec for o in objects]
    candidates = []
    for ref, relation in itertools.product(range(len(objects)), RELATIONS):
        reference = _centre(objects[ref].box)
        side = [i for i in range(len(objects)) if i != ref and _beyond(relation, _centre(objects[i].box), reference)]
        if len(side) == 1 and relation in relations(objects[side[0]].box, objects[ref].box):
            names = _referent(rng, specs, ref, ATTRIBUTES)
            if names is not None:
                candidates.append((ref, relation, side[0], names))
    if not candidates:
        return None
    ref, relation, answer, names = _pick(rng, candidates)
    template = _pick(rng, ["what is {} the {}?", "what shape is {} the {}?"])
    return SceneQuestion(template.format(relation, describe(specs[ref], names)), specs[answer].shape, "relation")


def scene_questions(rng: np.random.Generator, objects: list[SceneObject]) -> list[SceneQuestion]:
    """The questions of one scene: one of each kind it allows, two existence questions."""
    specs = [o.spec for o in objects]
    makers: list[Callable[[], SceneQuestion | list[SceneQuestion] | None]] = [
        lambda: count_question(rng, specs),
        lambda: attribute_question(rng, specs, "colour"),
        lambda: shape_question(rng, specs),
        lambda: attribute_question(rng, specs, "fill"),
        lambda: attribute_question(rng, specs, "size"),
        lambda: existence_questions(rng, specs),
        lambda: relation_question(rng, objects),
    ]
    questions: list[SceneQuestion] = []
    for make in makers:
        made = make()
        if isinstance(made, list):
            questions.extend(made)
        elif made is not None:
            questions.append(made)
    return questions
