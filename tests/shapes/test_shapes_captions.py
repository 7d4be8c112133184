"""Captions and phrases: spans match phrases, phrases match objects, training text avoids test words."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from glip.shapes.captions import CaptionBuilder, grounding_caption, referring_phrases, relations
from glip.shapes.scene import ObjectSpec, SceneObject, attribute_specs, random_spec
from glip.shapes.vocabulary import (ATTRIBUTES, COLOURS, FILLS, NOVEL_SHAPES, PLURALS, SIZES, SPLITS, SYNONYMS,
                                    TRAINED_SHAPES, TRAINING_FORBIDDEN_WORDS)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def random_objects(rng: np.random.Generator, count: int) -> list[SceneObject]:
    """Objects with random specs and boxes; captions need nothing else."""
    objects = []
    for _ in range(count):
        x, y = rng.uniform(0, 250, size=2)
        w, h = rng.uniform(10, 70, size=2)
        objects.append(SceneObject(random_spec(rng, TRAINED_SHAPES), (x, y, x + w, y + h), w * h, 1.0, 0.0, w))
    return objects


def phrase_matches(phrase: str, obj: dict | ObjectSpec) -> bool:
    """Whether a phrase's words (past its determiner) name this object's shape and attributes."""
    record = obj if isinstance(obj, dict) else asdict(obj)
    *adjectives, noun = phrase.split()[1:]
    shape = record["shape"]
    return noun in (shape, PLURALS[shape]) and all(word in (record[name] for name in ATTRIBUTES) for word in adjectives)


@pytest.fixture(scope="module")
def many_captions() -> list[tuple[CaptionBuilder, list[SceneObject]]]:
    rng = np.random.default_rng(0)
    results = []
    for _ in range(500):
        objects = random_objects(rng, int(rng.integers(1, 9)))
        results.append((grounding_caption(rng, objects), objects))
    return results


def test_caption_builder_spans():
    builder = CaptionBuilder()
    builder.add("there are ")
    builder.add_phrase("two red stars", [0, 1])
    assert builder.caption[slice(*builder.phrases[0][1])] == "two red stars"


def test_every_object_is_mentioned_once_by_a_phrase_that_fits_it_alone(many_captions):
    for builder, objects in many_captions:
        mentioned = [i for _, _, members in builder.phrases for i in members]
        assert sorted(mentioned) == list(range(len(objects)))
        for text, (start, end), members in builder.phrases:
            assert builder.caption[start:end] == text
            fits = [i for i, o in enumerate(objects) if phrase_matches(text, o.spec)]
            assert fits == sorted(members), (builder.caption, text)


def test_relations_in_captions_hold(many_captions):
    names = "|".join(re.escape(r) for r in ("above", "below", "to the left of", "to the right of"))
    seen = 0
    for builder, objects in many_captions:
        ordered = sorted(builder.phrases, key=lambda phrase: phrase[1][0])
        for (_, (_, end), first), (_, (start, _), second) in zip(ordered, ordered[1:]):
            between = builder.caption[end:start].strip()
            if re.fullmatch(names, between):
                seen += 1
                assert len(first) == len(second) == 1
                assert between in relations(objects[first[0]].box, objects[second[0]].box)
    assert seen > 50


def test_relations_on_hand_made_boxes():
    assert relations((0, 0, 10, 10), (0, 20, 10, 30)) == ["above"]
    assert relations((20, 0, 30, 10), (0, 0, 10, 10)) == ["to the right of"]
    assert relations((0, 0, 10, 10), (5, 5, 15, 15)) == []


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_training_text_never_uses_novel_or_synonym_words(many_captions, shapes_root):
    forbidden = set(TRAINING_FORBIDDEN_WORDS) | {word + suffix for word in TRAINING_FORBIDDEN_WORDS
                                                 for suffix in ("s", "es")}
    assert {"ellipse", "trapezoid", "octagon", "disk", "rhombus", "plus", "donut", "oblong"} <= forbidden
    captions = [builder.caption for builder, _ in many_captions]
    for split in ("ground-train", "attributes-train"):
        assert SPLITS[split].training
        captions += [r["grounding"]["caption"] for r in read_jsonl(shapes_root / split / "grounding.jsonl")]
    training_words = set().union(*map(words, captions))
    training_words |= set().union(*map(words, SPLITS["det-train"].categories))
    assert not training_words & forbidden
    # The caption vocabulary is closed: shapes, plurals, attributes, counts, relations, glue words.
    known = words(" ".join(list(TRAINED_SHAPES) + [PLURALS[s] for s in TRAINED_SHAPES] + list(COLOURS)
                           + list(SIZES) + list(FILLS)))
    known |= words("a an two three four five six seven eight above below to the left right of and "
                   "there is are picture image with we can see")
    assert training_words <= known


def test_splits_vocabulary_is_disjoint_as_specified():
    assert not set(NOVEL_SHAPES) & set(TRAINED_SHAPES)
    assert set(SPLITS["zeroshot-grounded"].categories).isdisjoint(SPLITS["det-train"].categories)
    assert set(SPLITS["zeroshot-grounded"].categories) <= set(SPLITS["ground-train"].categories)
    assert set(SPLITS["zeroshot-novel"].categories).isdisjoint(SPLITS["ground-train"].categories)
    assert len(SYNONYMS) >= 5 and not words(" ".join(SYNONYMS)) & words(" ".join(TRAINED_SHAPES))
    assert set(SYNONYMS.values()) <= set(SPLITS["det-train"].categories)


@pytest.mark.parametrize("split", ["ground-train", "attributes-train", "attributes"])
def test_written_spans_equal_phrases(shapes_root, split):
    for record in read_jsonl(shapes_root / split / "grounding.jsonl"):
        caption = record["grounding"]["caption"]
        assert record["grounding"]["regions"]
        for region in record["grounding"]["regions"]:
            assert [caption[s:e] for s, e in region["tokens_positive"]] == [region["phrase"]]


def test_ground_train_regions_are_all_objects(shapes_root):
    scenes = {s["image_id"]: s["objects"] for s in read_jsonl(shapes_root / "ground-train" / "scenes.jsonl")}
    for record in read_jsonl(shapes_root / "ground-train" / "grounding.jsonl"):
        boxes = sorted(tuple(region["bbox"]) for region in record["grounding"]["regions"])
        assert boxes == sorted(tuple(obj["bbox"]) for obj in scenes[record["image_id"]])


def test_attribute_training_captions_name_each_object_alone(shapes_root):
    scenes = {s["image_id"]: s["objects"] for s in read_jsonl(shapes_root / "attributes-train" / "scenes.jsonl")}
    with_attributes = 0
    for record in read_jsonl(shapes_root / "attributes-train" / "grounding.jsonl"):
        objects = scenes[record["image_id"]]
        regions = record["grounding"]["regions"]
        assert sorted(tuple(r["bbox"]) for r in regions) == sorted(tuple(o["bbox"]) for o in objects)
        assert len({tuple(r["tokens_positive"][0]) for r in regions}) == len(regions)  # one phrase per object
        for region in regions:
            fits = [obj["bbox"] for obj in objects if phrase_matches(region["phrase"], obj)]
            assert fits == [region["bbox"]], (record["grounding"]["caption"], region["phrase"])
            with_attributes += len(region["phrase"].split()) > 2
    assert with_attributes > 0


def test_attribute_phrases_pick_exactly_their_target(shapes_root):
    scenes = {s["image_id"]: s["objects"] for s in read_jsonl(shapes_root / "attributes" / "scenes.jsonl")}
    records = read_jsonl(shapes_root / "attributes" / "grounding.jsonl")
    assert len(records) == sum(len(objects) for objects in scenes.values())
    for record in records:
        objects = scenes[record["image_id"]]
        (region,) = record["grounding"]["regions"]
        assert region["phrase"] == record["grounding"]["caption"]
        assert region["bbox"] == objects[record["target"]]["bbox"]
        fits = [i for i, obj in enumerate(objects) if phrase_matches(region["phrase"], obj)]
        assert fits == [record["target"]]


def test_referring_phrases_use_distinguishing_attributes():
    rng = np.random.default_rng(1)
    for _ in range(200):
        specs = attribute_specs(rng, TRAINED_SHAPES, int(rng.integers(2, 5)))
        for index, phrase in enumerate(referring_phrases(rng, specs)):
            assert [i for i, spec in enumerate(specs) if phrase_matches(phrase, spec)] == [index]
    twins = [ObjectSpec("star", "red", "small", "solid")] * 2
    with pytest.raises(ValueError, match="twin"):
        referring_phrases(rng, twins)
