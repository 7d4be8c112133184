"""Many classes on tiny random models: prompt chunks batched through a fused head, and a tower
without text run once, give the detections of running the whole model per chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glip.config import get_config
from glip.engine import DetectionCancelled, DetectionEngine
from glip.head_passes import chunk_passes
from glip.images import prepare_images
from glip.modeling.glip import GLIP
from glip.prompts import chunk_class_names

NAMES = [f"thing number {i}" for i in range(40)]


def _engine(config: str) -> DetectionEngine:
    torch.manual_seed(0)
    model = GLIP(get_config(config)).eval()
    with torch.no_grad():
        model.head.bias0.fill_(0.0)  # give the scores a spread, so that candidates exist
        for block in model.head.blocks:  # non-zero offsets, so that the deformable convs matter
            torch.nn.init.normal_(block.dyconv.offset_mask.weight, std=0.05)
    return DetectionEngine(model, chunks_per_pass=3)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(2)
    pixels = [rng.integers(0, 255, size=(64, 96, 3), dtype=np.uint8) for _ in range(2)]
    return prepare_images(pixels, get_config("glip-tiny").input)


def _same(a, b) -> None:
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.boxes, b.boxes, atol=1e-3, rtol=0)
    assert torch.equal(a.labels, b.labels)


@pytest.mark.parametrize("config", ["glip-tiny", "glip-tiny-nofusion"])
def test_batched_chunks_equal_the_whole_model_per_chunk(config, batch, monkeypatch):
    engine = _engine(config)
    chunks = chunk_class_names(NAMES, max_length=24)
    assert len(chunks) >= 7  # several passes of 3 chunks, the last one short
    towers = []
    original = engine.model.head.tower
    monkeypatch.setattr(engine.model.head, "tower", lambda *a: towers.append(a[0][0].shape[0]) or original(*a))
    batched = engine.detect(batch, chunks, max_detections=1000)
    if config == "glip-tiny":  # passes of 3 chunks x 2 images
        assert towers == [6] * (len(chunks) // 3) + [2 * (len(chunks) % 3)] * bool(len(chunks) % 3)
    else:  # the tower once for the batch
        assert towers == [2]
    rerun = engine.detect(batch, chunks, max_detections=1000, image_side_once=False)
    for a, b in zip(batched, rerun):
        _same(a, b)
    assert max(int(d.labels.max()) for d in batched) >= len(chunks[0].prompt.phrases)  # later chunks found


@pytest.mark.parametrize("config", ["glip-tiny", "glip-tiny-nofusion"])
def test_uneven_chunk_lists(config, batch):
    engine = _engine(config)
    chunks = chunk_class_names(NAMES[:12], max_length=24)
    mixed = engine.detect(batch, [chunks, chunks[1:2]], max_detections=1000)
    shared = engine.detect(batch, chunks, max_detections=1000)
    alone = engine.detect(batch, [chunks[1:2], chunks[1:2]], max_detections=1000)
    _same(mixed[0], shared[0])
    _same(mixed[1], alone[1])


def test_cancelled_between_passes(batch):
    engine = _engine("glip-tiny")
    chunks = chunk_class_names(NAMES, max_length=24)
    polls = []
    with pytest.raises(DetectionCancelled):
        engine.detect(batch, chunks, cancelled=lambda: polls.append(1) or len(polls) > 1)
    assert len(polls) == 2


def test_chunks_per_pass_must_be_positive(batch):
    engine = _engine("glip-tiny")
    features = engine.model.encode_images(batch.tensor)
    with pytest.raises(ValueError, match="chunks_per_pass"):
        next(chunk_passes(engine.model, features, [chunk_class_names(["a"])], 0))
