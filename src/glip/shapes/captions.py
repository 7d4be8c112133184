"""Captions and referring phrases for scenes, with the character spans of every phrase.

A phrase names a set of objects by their shape and some of their attributes, and refers to exactly
the objects of the scene that match it: "a small red star" is the only small red star, "two striped
hearts" are all the striped hearts. So a phrase's boxes are never ambiguous.

``ground-train`` captions cover every object once: each object not yet mentioned gets a random
subset of its attributes, grown until the phrase matches no object already mentioned. Pairs of
single-object phrases may be joined by a spatial relation that holds between their boxes
("a small red star above a blue ring"; "above" means the first box ends before the second begins).

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
from glip.shapes.vocabulary import ATTRIBUTES, COUNT_WORDS, PLURALS

PREFIXES: tuple[str, ...] = ("", "", "there {be} ", "a picture of ", "an image with ", "we can see ")
ATTRIBUTE_COUNT_WEIGHTS = (0.2, 0.35, 0.3, 0.15)  # how many attributes a phrase starts with: 0..3
RELATION_PROBABILITY = 0.6  # chance that two single-object phrases are joined by a relation


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


def _groups(rng: np.random.Generator, specs: list[ObjectSpec]) -> list[tuple[set[str], list[int]]]:
    """Partition the objects into phrase groups: (attributes named, objects referred to)."""
    covered: set[int] = set()
    groups = []
    for index in rng.permutation(len(specs)).tolist():
        if index in covered:
            continue
        order = [ATTRIBUTES[i] for i in rng.permutation(len(ATTRIBUTES))]
        count = int(rng.choice(len(ATTRIBUTE_COUNT_WEIGHTS), p=ATTRIBUTE_COUNT_WEIGHTS))
        attributes = set(order[:count])
        members = matching(specs, specs[index], attributes)
        # Naming every attribute always works: an identical object would have been covered with it.
        while covered.intersection(members):
            attributes.add(order[len(attributes)])
            members = matching(specs, specs[index], attributes)
        covered.update(members)
        groups.append((attributes, members))
    return groups


def _clauses(rng: np.random.Generator, objects: list[SceneObject],
             groups: list[tuple[set[str], list[int]]]) -> list[list[tuple[str, list[int] | None]]]:
    """Clauses as lists of (text, objects) pieces; objects None for connecting words."""
    specs = [o.spec for o in objects]
    phrase = [(noun_phrase(specs[members[0]], attributes, len(members)), members) for attributes, members in groups]
    singles = [i for i, (_, members) in enumerate(groups) if len(members) == 1]
    paired: set[int] = set()
    clauses = []
    for a, b in itertools.combinations(singles, 2):
        if a in paired or b in paired or rng.random() >= RELATION_PROBABILITY:
            continue
        held = relations(objects[groups[a][1][0]].box, objects[groups[b][1][0]].box)
        if held:
            relation = held[int(rng.integers(len(held)))]
            clauses.append([phrase[a], (f" {relation} ", None), phrase[b]])
            paired.update((a, b))
    clauses += [[phrase[i]] for i in range(len(groups)) if i not in paired]
    return [clauses[i] for i in rng.permutation(len(clauses))]


def _assemble(rng: np.random.Generator, objects: list[SceneObject],
              groups: list[tuple[set[str], list[int]]]) -> CaptionBuilder:
    """A caption of one phrase per group, single-object phrases sometimes joined by relations."""
    clauses = _clauses(rng, objects, groups)
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
    return _assemble(rng, objects, _groups(rng, [o.spec for o in objects]))


def referring_caption(rng: np.random.Generator, objects: list[SceneObject]) -> CaptionBuilder:
    """A caption naming every object by its own referring phrase (``attributes-train``).

    Unlike `grounding_caption`, no phrase covers several objects: each object gets the attributes
    that tell it apart from the other objects of its shape (see `referring_attributes`), so objects
    of one shape are told apart in the text only by their attribute words.
    """
    attributes = referring_attributes(rng, [o.spec for o in objects])
    return _assemble(rng, objects, [(names, [index]) for index, names in enumerate(attributes)])


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
