"""Instance masks in the outputs (`GLIPPredictor.detect(masks=True)`, `DetectionEngine.detect_with_masks`)
on a tiny random model with a mask head: formats, boxes, chunks, batches, the cap, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glip.checkpoint import load_glip
from glip.data.masks import rle_to_mask
from glip.engine import DetectionCancelled, DetectionEngine
from glip.images import prepare_images
from glip.predictor import GLIPPredictor
from glip.prompts import chunk_class_names
from masked_model import save_masked_glip

NAMES = [f"thing number {i}" for i in range(30)]  # several prompt chunks at max_length 24


@pytest.fixture(scope="module")
def masked_checkpoint(tmp_path_factory):
    return save_masked_glip(tmp_path_factory.mktemp("masked") / "glip-tiny-masks.safetensors")


@pytest.fixture(scope="module")
def predictor(masked_checkpoint):
    return GLIPPredictor.from_pretrained(masked_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8) for _ in range(2)]


def _check_masks(result) -> None:
    """One RLE of the image's size per detection, its pixels inside the box (pixel centres within it)."""
    assert result.detections
    for detection in result.detections:
        assert detection.segmentation["size"] == [result.height, result.width]
        assert isinstance(detection.segmentation["counts"], str)
        mask = rle_to_mask(detection.segmentation)
        assert detection.mask_area == int(mask.sum())
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = detection.bbox_xyxy
        if len(xs):
            assert x1 - 0.5 - 0.01 <= xs.min() and xs.max() + 0.5 <= x2 + 0.01, (detection.bbox_xyxy, xs.min(), xs.max())
            assert y1 - 0.5 - 0.01 <= ys.min() and ys.max() + 0.5 <= y2 + 0.01, (detection.bbox_xyxy, ys.min(), ys.max())
    assert sum(d.mask_area for d in result.detections) > 0, "a random mask head sets about half of a box"


def _boxes(result) -> list[tuple]:
    return [(d.phrase_index, d.phrase, d.score, tuple(d.bbox_xyxy)) for d in result.detections]


def test_masks_add_one_rle_per_detection_and_change_nothing_else(predictor, pixels):
    (plain,) = predictor.detect(pixels[0], classes=["circle", "square"], threshold=0.3)
    (masked,) = predictor.detect(pixels[0], classes=["circle", "square"], threshold=0.3, masks=True)
    assert _boxes(masked) == _boxes(plain)
    _check_masks(masked)
    assert all(set(d) == {"bbox_xyxy", "score", "phrase", "phrase_index"} for d in plain.to_dict()["detections"])
    record = masked.to_dict()["detections"][0]
    assert list(record) == ["bbox_xyxy", "score", "phrase", "phrase_index", "segmentation", "mask_area"]


def test_a_mask_follows_the_original_image_size(predictor, pixels):
    big = np.kron(pixels[0], np.ones((3, 3, 1), dtype=np.uint8))  # 360 x 480, resized down by the predictor
    (result,) = predictor.detect(big, classes=["circle"], threshold=0.3, masks=True)
    assert (result.height, result.width) == (360, 480)
    _check_masks(result)


@pytest.mark.parametrize("all_names", [False, True])
def test_chunked_prompts_and_batches(predictor, pixels, monkeypatch, all_names):
    monkeypatch.setattr(predictor, "max_length", 24)
    assert len(predictor.build_prompts(classes=NAMES)) > 2
    options = dict(classes=NAMES, threshold=0.3, max_detections=40, all_names=all_names)
    plain = predictor.detect(pixels, batch_size=2, **options)
    batched = predictor.detect(pixels, batch_size=2, masks=True, **options)
    single = [predictor.detect(image, masks=True, **options)[0] for image in pixels]
    for a, b, c in zip(plain, batched, single):
        assert _boxes(b) == _boxes(a) and len(b.detections) <= 40
        assert max(d.phrase_index for d in b.detections) >= 8  # detections of later chunks, with their masks
        _check_masks(b)
        for x, y in zip(b.detections, c.detections):  # a batch of one: same masks up to float rounding
            assert x.phrase_index == y.phrase_index
            mx, my = rle_to_mask(x.segmentation), rle_to_mask(y.segmentation)
            assert (mx != my).sum() <= max(2, 0.02 * max(mx.sum(), 1))


def test_a_model_without_a_mask_head_is_a_clear_error(tiny_checkpoint, pixels):
    plain = GLIPPredictor.from_pretrained(tiny_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="no mask head.*trained with a mask head") as error:
        plain.detect(pixels[0], classes=["circle"], masks=True)
    assert "\n" not in str(error.value)
    assert plain.detect(pixels[0], classes=["circle"], threshold=0.0)[0].detections  # masks off: as before


# ------------------------------------------------------------------ the engine


@pytest.fixture(scope="module")
def engine(masked_checkpoint):
    return DetectionEngine(load_glip(masked_checkpoint).eval())


@pytest.fixture(scope="module")
def batch(engine, pixels):
    return prepare_images(pixels, engine.model.config.input)


def _same(a, b) -> None:
    """The same detections up to float rounding; near-tied scores may come in either order."""
    assert len(a) == len(b) > 0
    close = ((a.scores[:, None] - b.scores[None]).abs() <= 1e-5) & (a.labels[:, None] == b.labels[None]) \
        & ((a.boxes[:, None] - b.boxes[None]).abs().amax(-1) <= 1e-2)  # [Na, Nb]
    assert close.any(1).all() and close.any(0).all()


def test_engine_masks_keep_the_detections_and_use_each_chunks_features(engine, batch):
    chunks = chunk_class_names(NAMES, max_length=24)
    plain = engine.detect(batch, [chunks, chunks[:1]], max_detections=30)
    masked = engine.detect_with_masks(batch, [chunks, chunks[:1]], max_detections=30)
    resolution = engine.model.config.mask_head.resolution
    for a, b in zip(plain, masked):
        _same(a, b.detections)
        assert b.mask_logits.shape == (len(a), resolution, resolution)
    # A detection of the last chunk has the mask that chunk alone gives (its own fused features).
    last = chunks[-1]
    alone = engine.detect_with_masks(batch, [last], max_detections=30)[0]
    rows = (masked[0].detections.labels >= last.phrase_offset).nonzero().flatten()
    assert len(rows), "the last chunk should place a detection under the cap"
    for row in rows.tolist():
        match = ((alone.detections.labels == masked[0].detections.labels[row])
                 & (alone.detections.scores == masked[0].detections.scores[row])).nonzero().flatten()
        assert len(match) == 1
        torch.testing.assert_close(alone.mask_logits[match[0]], masked[0].mask_logits[row], atol=1e-4, rtol=1e-4)


def test_engine_min_score_rerun_and_cancel(engine, batch):
    chunks = chunk_class_names(["circle", "square", "star", "hexagon"], max_length=6)
    plain = engine.detect(batch, chunks)
    masked = engine.detect_with_masks(batch, chunks, min_score=0.5, image_side_once=False)
    for a, b in zip(plain, masked):
        _same(a.select(a.scores >= 0.5), b.detections)
        assert len(b.mask_logits) == len(b.detections)
    with pytest.raises(DetectionCancelled):
        engine.detect_with_masks(batch, chunks, cancelled=lambda: True)


def test_engine_without_a_mask_head(tiny_checkpoint, batch):
    with pytest.raises(ValueError, match="no mask head"):
        DetectionEngine(load_glip(tiny_checkpoint).eval()).detect_with_masks(batch, chunk_class_names(["circle"]))
