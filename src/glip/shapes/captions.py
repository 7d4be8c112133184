"""Captions and referring phrases for scenes, with the character spans of every phrase.

A phrase names a set of objects by their shape and some of their attributes, and refers to exactly
the objects of the scene that match it: "a small red star" is the only small red star, "two striped
hearts" are all the striped hearts. So a phrase's boxes are never ambiguous.

``ground-train`` captions cover every object once: each object not yet mentioned gets a random
subset of its attributes, grown until the phrase matches no object already mentioned. Pairs of
single-object phrases may be joined by a spatial relation that holds between their boxes
("a small red star above a blue ring"; "above" means the first box ends before the second begins).

``web`` captions (`web_caption`) are built the same way, but relate the phrase of a novel shape
to one of a trained shape whenever a relation holds and a draw allows ("a red ellipse to the left
of a blue star"), the context a teacher can use for a word it never saw.

``attributes`` queries refer to one object each with a smallest set of attributes telling it apart
from the other objects of its shape, sometimes with a shared attribute added. ``attributes-train``
captions name every object of a scene that way, in one caption.

Example:
    >>> builder = CaptionBuilder()
    >>> builder.add("there is ")
    >>> builder.add_phrase("a red star", [0])
    >>> builder.caption, builder.phrases
    ('there is a red star', [('a red star', (9, 19), [0])])
"""

from __future__ import annotations

import itertools

import numpy as np

from glip.shapes.scene import ObjectSpec, SceneObject
from glip.shapes.vocabulary import ATTRIBUTES, COUNT_WORDS, NOVEL_SHAPES, PLURALS

PREFIXES: tuple[str, ...] = ("", "", "there {be} ", "a picture of ", "an image with ", "we can see ")
ATTRIBUTE_COUNT_WEIGHTS = (0.2, 0.35, 0.3, 0.15)  # how many attributes a phrase starts with: 0..3
RELATION_PROBABILITY = 0.6  # chance that two single-object phrases are joined by a relation
# ``web`` captions: a novel-shape phrase mostly names a known attribute ("a red ellipse") and is mostly
# related to a trained-shape phrase, the context a teacher can use to guess the unknown word's box.
NOVEL_ATTRIBUTE_COUNT_WEIGHTS = (0.1, 0.45, 0.3, 0.15)
WEB_RELATION_PROBABILITY = 0.8  # chance, per trained partner tried, that a novel phrase is related to it


class CaptionBuilder:
    """Appends text to a caption, remembering each phrase's ``[start, end)`` span and objects."""

    def __init__(self) -> None:
        self.caption = ""
        self.phrases: list[tuple[str, tuple[int, int], list[int]]] = []

    def add(self, text: str) -> None:
        self.caption += text

    def add_phrase(self, text: str, objects: list[int]) -> None:
        start = len(self.caption)
        self.caption += text
        self.phrases.append((text, (start, len(self.caption)), objects))


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(spec: ObjectSpec, attributes: set[str] | frozenset[str], count: int) -> str:
    """E.g. ``"a small red striped star"`` or, for ``count`` 2, ``"two striped stars"``."""
    words = [spec.attribute(name) for name in ATTRIBUTES if name in attributes]
    words.append(spec.shape if count == 1 else PLURALS[spec.shape])
    determiner = article(words[0]) if count == 1 else COUNT_WORDS[count]
    return " ".join([determiner] + words)


def matching(specs: list[ObjectSpec], reference: ObjectSpec, attributes: set[str]) -> list[int]:
    """Indices of the objects with the reference's shape and its values of ``attributes``."""
    return [i for i, spec in enumerate(specs) if spec.shape == reference.shape
            and all(spec.attribute(name) == reference.attribute(name) for name in attributes)]


def relations(first: tuple[float, ...], second: tuple[float, ...]) -> list[str]:
    """Spatial relations that hold from box ``first`` to box ``second`` (both ``x1, y1, x2, y2``)."""
    held = []
    if first[3] <= second[1]:
        held.append("above")
    if first[1] >= second[3]:
        held.append("below")
    if first[2] <= second[0]:
        held.append("to the left of")
    if first[0] >= second[2]:
        held.append("to the right of")
    return held


def _groups(rng: np.random.Generator, specs: list[ObjectSpec],
            weights: dict[str, tuple[float, ...]] | None = None) -> list[tuple[set[str], list[int]]]:
    """Partition the objects into phrase groups: (attributes named, objects referred to).

    ``weights`` maps a shape to its own attribute-count weights (default `ATTRIBUTE_COUNT_WEIGHTS`).
    """
    covered: set[int] = set()
    groups = []
    for index in rng.permutation(len(specs)).tolist():
        if index in covered:
            continue
        order = [ATTRIBUTES[i] for i in rng.permutation(len(ATTRIBUTES))]
        p = (weights or {}).get(specs[index].shape, ATTRIBUTE_COUNT_WEIGHTS)
        count = int(rng.choice(len(p), p=p))
        attributes = set(order[:count])
        members = matching(specs, specs[index], attributes)
        # Naming every attribute always works: an identical object would have been covered with it.
        while covered.intersection(members):
            attributes.add(order[len(attributes)])
            members = matching(specs, specs[index], attributes)
        covered.update(members)
        groups.append((attributes, members))
    return groups


def _phrases(objects: list[SceneObject], groups: list[tuple[set[str], list[int]]]) -> list[tuple[str, list[int]]]:
    specs = [o.spec for o in objects]
    return [(noun_phrase(specs[members[0]], attributes, len(members)), members) for attributes, members in groups]


def _relate(rng: np.random.Generator, objects: list[SceneObject], groups: list[tuple[set[str], list[int]]],
            candidates: list[tuple[int, int]], probability: float, paired: set[int],
            clauses: list[list[tuple[str, list[int] | None]]]) -> None:
    """Join candidate pairs ``(a, b)`` of single-object groups by a relation that holds from a to b.

    Each pair whose groups are both still free is joined with chance ``probability`` when some
    relation holds; the clause goes to ``clauses`` and both groups to ``paired``.
    """
    phrase = _phrases(objects, groups)
    for a, b in candidates:
        if a in paired or b in paired or rng.random() >= probability:
            continue
        held = relations(objects[groups[a][1][0]].box, objects[groups[b][1][0]].box)
        if held:
            relation = held[int(rng.integers(len(held)))]
            clauses.append([phrase[a], (f" {relation} ", None), phrase[b]])
            paired.update((a, b))


def _shuffled(rng: np.random.Generator, objects: list[SceneObject], groups: list[tuple[set[str], list[int]]],
              paired: set[int], clauses: list[list[tuple[str, list[int] | None]]]) -> list[list]:
    """The joined clauses plus one clause per group left alone, in random order."""
    phrase = _phrases(objects, groups)
    clauses = clauses + [[phrase[i]] for i in range(len(groups)) if i not in paired]
    return [clauses[i] for i in rng.permutation(len(clauses))]


def _clauses(rng: np.random.Generator, objects: list[SceneObject],
             groups: list[tuple[set[str], list[int]]]) -> list[list[tuple[str, list[int] | None]]]:
    """Clauses as lists of (text, objects) pieces; objects None for connecting words."""
    singles = [i for i, (_, members) in enumerate(groups) if len(members) == 1]
    paired: set[int] = set()
    clauses: list[list[tuple[str, list[int] | None]]] = []
    _relate(rng, objects, groups, list(itertools.combinations(singles, 2)), RELATION_PROBABILITY, paired, clauses)
    return _shuffled(rng, objects, groups, paired, clauses)


def _assemble(rng: np.random.Generator, clauses: list[list[tuple[str, list[int] | None]]]) -> CaptionBuilder:
    """A caption of the clauses: a prefix, the clauses joined by commas and "and", maybe a full stop."""
    builder = CaptionBuilder()
    prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
    builder.add(prefix.format(be="is" if len(clauses[0][0][1]) == 1 else "are"))
    oxford = rng.random() < 0.5
    for position, clause in enumerate(clauses):
        if position > 0:
            last = position == len(clauses) - 1
            builder.add((", and " if oxford and len(clauses) > 2 else " and ") if last else ", ")
        for text, members in clause:
            if members is None:
                builder.add(text)
            else:
                builder.add_phrase(text, members)
    if rng.random() < 0.5:
        builder.add(".")
    return builder


def grounding_caption(rng: np.random.Generator, objects: list[SceneObject]) -> CaptionBuilder:
    """A caption mentioning every object of the scene exactly once."""
    groups = _groups(rng, [o.spec for o in objects])
    return _assemble(rng, _clauses(rng, objects, groups))


def web_caption(rng: np.random.Generator, objects: list[SceneObject]) -> CaptionBuilder:
    """A ``web`` caption: every object mentioned once, novel shapes in the context of trained ones.

    Phrases are grouped as in `grounding_caption`, but a phrase of a novel shape (ellipse,
    trapezoid, octagon) names 1-3 attributes nine times in ten, and is first tried against each
    single-object phrase of a trained shape, in random order and on either side, so that most
    read like "a red ellipse to the left of a blue star". The other phrases are then related as
    in `grounding_caption`.
    """
    specs = [o.spec for o in objects]
    groups = _groups(rng, specs, {shape: NOVEL_ATTRIBUTE_COUNT_WEIGHTS for shape in NOVEL_SHAPES})
    singles = [i for i, (_, members) in enumerate(groups) if len(members) == 1]
    novel = [i for i in singles if specs[groups[i][1][0]].shape in NOVEL_SHAPES]
    trained = [i for i in singles if i not in novel]
    candidates = []
    for a in novel:
        for b in rng.permutation(trained).tolist():
            candidates.append((a, b) if rng.random() < 0.5 else (b, a))
    paired: set[int] = set()
    clauses: list[list[tuple[str, list[int] | None]]] = []
    _relate(rng, objects, groups, candidates, WEB_RELATION_PROBABILITY, paired, clauses)
    _relate(rng, objects, groups, list(itertools.combinations(singles, 2)), RELATION_PROBABILITY, paired, clauses)
    return _assemble(rng, _shuffled(rng, objects, groups, paired, clauses))


def referring_caption(rng: np.random.Generator, objects: list[SceneObject]) -> CaptionBuilder:
    """A caption naming every object by its own referring phrase (``attributes-train``).

    Unlike `grounding_caption`, no phrase covers several objects: each object gets the attributes
    that tell it apart from the other objects of its shape (see `referring_attributes`), so objects
    of one shape are told apart in the text only by their attribute words.
    """
    attributes = referring_attributes(rng, [o.spec for o in objects])
    groups = [(names, [index]) for index, names in enumerate(attributes)]
    return _assemble(rng, _clauses(rng, objects, groups))


def referring_attributes(rng: np.random.Generator, specs: list[ObjectSpec]) -> list[set[str]]:
    """For each object, attributes whose phrase matches it and no other object.

    A smallest telling set (a random one among the smallest), plus each other attribute with
    chance 1/4: more words never hurt uniqueness.
    """
    chosen = []
    for index, spec in enumerate(specs):
        for size in range(len(ATTRIBUTES) + 1):
            unique = [set(names) for names in itertools.combinations(ATTRIBUTES, size)
                      if matching(specs, spec, set(names)) == [index]]
            if unique:
                break
        else:
            raise ValueError(f"object {index} ({spec}) has an identical twin; it cannot be referred to")
        attributes = unique[int(rng.integers(len(unique)))]
        attributes |= {name for name in ATTRIBUTES if rng.random() < 0.25}
        chosen.append(attributes)
    return chosen


def referring_phrases(rng: np.random.Generator, specs: list[ObjectSpec]) -> list[str]:
    """For each object, a phrase that matches it and no other object."""
    return [noun_phrase(spec, attributes, 1) for spec, attributes in zip(specs, referring_attributes(rng, specs))]
