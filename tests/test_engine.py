"""The detection engine on a tiny random model: shared and per-image chunks, the image side once,
re-running the whole model per chunk, cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glip.checkpoint import load_glip
from glip.engine import DetectionCancelled, DetectionEngine
from glip.images import ImageBatch, prepare_images
from glip.prompts import PromptChunk, build_caption_prompt, chunk_class_names, tokenize_prompt


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return DetectionEngine(load_glip(tiny_checkpoint).eval())


@pytest.fixture(scope="module")
def batch(engine):
    rng = np.random.default_rng(1)
    # one size: padding a smaller image to a batch's size changes its features (as in the official code)
    pixels = [rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8) for _ in range(2)]
    return prepare_images(pixels, engine.model.config.input)


def _caption_chunk(engine, caption: str, phrases: list[str]) -> PromptChunk:
    prompt = build_caption_prompt(caption, phrases)
    return PromptChunk(prompt, tokenize_prompt(prompt, engine.model.config.text.max_length), 0)


def _same(a, b) -> None:
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-2, rtol=0)
    assert torch.equal(a.labels, b.labels)


def test_per_image_prompts_equal_one_image_at_a_time(engine, batch):
    chunks = [_caption_chunk(engine, "a red circle", ["red circle"]),
              _caption_chunk(engine, "a small square next to a big star", ["small square", "big star"])]
    together = engine.detect(batch, [[chunks[0]], [chunks[1]]])
    for index, chunk in enumerate(chunks):
        alone = engine.detect(_one(batch, index), [chunk])
        _same(together[index], alone[0])
    assert together[1].labels.max() <= 1 and together[0].labels.max() == 0


def _one(batch, index):
    return ImageBatch(batch.tensor[index:index + 1], [batch.image_sizes[index]], [batch.original_sizes[index]])


def _same_set(a, b) -> None:
    """`_same` up to the order of detections whose scores tie to float rounding: each side sorted by
    (score rounded to 1e-4, label, box) first. Batched passes may round differently, which swaps
    near-equal neighbours of the score ranking."""
    def canonical(d):
        rows = sorted(range(len(d)), key=lambda i: (-round(float(d.scores[i]), 4), int(d.labels[i]),
                                                      *[round(float(v), 1) for v in d.boxes[i]]))
        return type(d)(**{**vars(d), "scores": d.scores[rows], "boxes": d.boxes[rows], "labels": d.labels[rows]})
    _same(canonical(a), canonical(b))


def test_uneven_chunk_lists_and_image_side_once(engine, batch, monkeypatch):
    names = [f"thing number {i}" for i in range(30)]
    many = chunk_class_names(names, max_length=24)
    assert len(many) > 2
    calls = []
    original = engine.model.encode_images
    monkeypatch.setattr(engine.model, "encode_images", lambda x: calls.append(1) or original(x))
    mixed = engine.detect(batch, [many, many[:1]], max_detections=100_000)  # no cut between near-ties
    assert len(calls) == 1
    shared = engine.detect(batch, many, max_detections=100_000)
    _same_set(mixed[0], shared[0])
    assert int(mixed[1].labels.max()) < len(many[0].prompt.phrases)


def test_rerunning_the_whole_model_gives_the_same_detections(engine, batch):
    chunks = chunk_class_names(["circle", "square", "star", "hexagon"], max_length=6)
    once = engine.detect(batch, chunks)
    rerun = engine.detect(batch, chunks, image_side_once=False)
    for a, b in zip(once, rerun):
        _same(a, b)


def test_cancelled_before_any_head_pass(engine, batch):
    with pytest.raises(DetectionCancelled):
        engine.detect(batch, chunk_class_names(["circle"]), cancelled=lambda: True)


@pytest.mark.parametrize("chunks, message", [
    ([], "no prompt chunks"),
    ([[]], "chunk lists for 2 images"),
])
def test_bad_chunks(engine, batch, chunks, message):
    with pytest.raises(ValueError, match=message):
        engine.detect(batch, chunks)


def test_max_detections_must_be_positive(engine, batch):
    with pytest.raises(ValueError, match="at least 1"):
        engine.detect(batch, chunk_class_names(["circle"]), max_detections=0)
