"""Caption packing: the official draw, the token window, spans moved with their caption, determinism."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from glip.data import CaptionPacker, CaptionPacking, GroundingSample
from glip.prompts import count_prompt_tokens
from glip.tokenizer import load_tokenizer

WORDS = ["red", "blue", "green", "star", "ring", "ellipse", "trapezoid", "octagon", "left", "of", "a", "big"]


def _captions(count: int, seed: int = 0) -> list[str]:
    """Distinct captions of 1 to 12 words (some with a final '.')."""
    rng = random.Random(seed)
    captions = []
    for index in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
        captions.append(f"{' '.join(words)} number {index}" + ("." if index % 3 == 0 else ""))
    return captions


def _sample(caption: str, index: int = 0) -> GroundingSample:
    """A sample whose phrases are its first and last words, one box each."""
    first = (0, caption.index(" ")) if " " in caption else (0, len(caption))
    last_start = caption.rstrip(".").rfind(" ") + 1
    last = (last_start, len(caption.rstrip(".")))
    return GroundingSample(
        image_path=Path("unused.png"), caption=caption, phrase_spans=[[first], [last]],
        boxes=np.array([[1, 2, 10, 12], [3, 4, 20, 22]], dtype=np.float32), box_phrases=[0, 1],
        image_id=index, source=f"pool:{index}", width=64, height=48,
    )


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_draw_follows_the_official_probabilities() -> None:
    packing = CaptionPacking()
    rng = random.Random(0)
    counts = Counter(packing.draw_count(rng) for _ in range(20000))
    assert abs(counts[0] / 20000 - 0.4) < 0.015
    assert abs(counts[20] / 20000 - 0.3) < 0.015
    assert set(counts) == set(range(21))  # the random branch covers 1..19 ...
    middle = [counts[n] for n in range(1, 20)]
    assert max(middle) / min(middle) < 1.6  # ... uniformly (about 316 each)
    assert CaptionPacking(no_negatives_prob=1.0, all_negatives_prob=0.0).draw_count(rng) == 0


def test_packed_caption_never_exceeds_the_window(tokenizer) -> None:
    captions = _captions(60) + ["star " * 40]  # the last one alone is longer than the window
    window = 24
    packer = CaptionPacker(captions, CaptionPacking(), window, tokenizer)
    packed_counts = Counter()
    for seed in range(400):
        index = seed % len(captions)
        sample = _sample(captions[index], index)
        packed = packer.pack(sample, index, random.Random(seed))
        if count_prompt_tokens(sample.caption, tokenizer) > window:
            assert packed.caption == sample.caption  # nothing fits beside a caption that fills the window
            continue
        assert count_prompt_tokens(packed.caption, tokenizer) <= window
        packed_counts[packed.caption != sample.caption] += 1
    assert packed_counts[True] > 100  # the small window still takes some captions


def test_all_drawn_captions_that_fit_are_taken(tokenizer) -> None:
    """With a large window, a draw of 20 gives 20 captions; with a small one, the packed caption is full
    enough that the shortest caption of the pool would not have fitted too."""
    short = [f"a star number {index}" for index in range(80)]  # 5 tokens each with the "."
    always = CaptionPacking(no_negatives_prob=0.0, all_negatives_prob=1.0)
    packed = CaptionPacker(short, always, 256, tokenizer).pack(_sample(short[5], 5), 5, random.Random(1))
    assert packed.caption.count("number ") == 21
    captions = _captions(80)
    small = CaptionPacker(captions, CaptionPacking(0.0, 1.0, max_negatives=79), 40, tokenizer)
    packed = small.pack(_sample(captions[5], 5), 5, random.Random(2))
    shortest = min(count_prompt_tokens(c if c.endswith(".") else c + ".", tokenizer, special_tokens=False)
                   for c in captions)
    assert count_prompt_tokens(packed.caption, tokenizer) + shortest > 40


def test_spans_point_at_the_same_phrases_and_boxes_are_unchanged(tokenizer) -> None:
    captions = _captions(50)
    packer = CaptionPacker(captions, CaptionPacking(0.0, 0.5), 256, tokenizer)
    positions = set()
    for seed in range(100):
        index = seed % len(captions)
        sample = _sample(captions[index], index)
        packed = packer.pack(sample, index, random.Random(seed))
        assert packed.caption != sample.caption
        assert packed.phrase_texts() == sample.phrase_texts()
        start = packed.phrase_spans[0][0][0]
        assert packed.caption[start:start + len(sample.caption)] == sample.caption
        numbers = [int(n) for n in re.findall(r"number (\d+)", packed.caption)]
        assert len(numbers) == len(set(numbers)) and numbers.count(index) == 1  # others' captions, each once
        np.testing.assert_array_equal(packed.boxes, sample.boxes)  # only captions are added, never boxes
        assert packed.box_phrases == sample.box_phrases
        positions.add(start == 0)
    assert positions == {True, False}  # the order is shuffled: the own caption is not always first


def test_packing_is_deterministic_given_the_rng(tokenizer) -> None:
    captions = _captions(40)
    packer = CaptionPacker(captions, CaptionPacking(), 64, tokenizer)
    sample = _sample(captions[7], 7)
    first = [packer.pack(sample, 7, random.Random(seed)).caption for seed in range(30)]
    again = [CaptionPacker(captions, CaptionPacking(), 64, tokenizer).pack(sample, 7, random.Random(seed)).caption
             for seed in range(30)]
    assert first == again
    assert len(set(first)) > 10


def test_a_pool_of_one_caption_adds_nothing(tokenizer) -> None:
    packer = CaptionPacker(["a red star"], CaptionPacking(0.0, 1.0), 256, tokenizer)
    sample = _sample("a red star")
    assert packer.pack(sample, 0, random.Random(0)).caption == "a red star"


@pytest.mark.parametrize("kwargs, message", [
    ({"no_negatives_prob": 1.5}, "no_negatives_prob must be in"),
    ({"no_negatives_prob": 0.8, "all_negatives_prob": 0.3}, "at most 1"),
    ({"max_negatives": 0}, "max_negatives must be a positive integer"),
])
def test_invalid_packing_settings(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CaptionPacking(**kwargs)
