"""GLIPPredictor on a tiny random model: outputs, chunked prompts, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from glip.distributed import resolve_device
from glip.images import ImageError
from glip.predictor import GLIPPredictor


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return GLIPPredictor.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(pixels).save(path)
    return path


def test_detect_returns_boxes_in_original_pixels(predictor, scene):
    (result,) = predictor.detect([scene], classes=["circle", "square"], threshold=0.0)
    assert (result.width, result.height) == (160, 120)
    assert result.phrases == ["circle", "square"] and result.caption == "circle. square."
    assert 0 < len(result.detections) <= 100
    scores = [d.score for d in result.detections]
    assert scores == sorted(scores, reverse=True)
    for detection in result.detections:
        x1, y1, x2, y2 = detection.bbox_xyxy
        assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 120
        assert detection.phrase == result.phrases[detection.phrase_index]


def test_threshold_and_max_detections(predictor, scene):
    (everything,) = predictor.detect(scene, classes=["circle", "square"], threshold=0.0)
    cut = everything.detections[len(everything.detections) // 2].score
    (above,) = predictor.detect(scene, classes=["circle", "square"], threshold=cut)
    assert all(d.score >= cut for d in above.detections)
    assert len(above.detections) < len(everything.detections)
    (few,) = predictor.detect(scene, classes=["circle", "square"], threshold=0.0, max_detections=5)
    assert len(few.detections) == 5
    assert [d.score for d in few.detections] == [d.score for d in everything.detections[:5]]
    (few_pairs,) = predictor.detect(scene, classes=["circle", "square"], threshold=0.0, max_detections=5,
                                    all_names=True)
    assert len(few_pairs.detections) == 5


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def test_each_object_once_under_its_best_name(predictor, scene):
    classes = ["circle", "square", "star"]
    (pairs,) = predictor.detect(scene, classes=classes, threshold=0.0, all_names=True)
    (merged,) = predictor.detect(scene, classes=classes, threshold=0.0)
    # a random model names every region under several classes: the pairs overlap across names
    assert len(set(d.phrase for d in pairs.detections)) > 1
    assert len(merged.detections) < len(pairs.detections)
    pair_set = {(tuple(d.bbox_xyxy), d.phrase, d.score) for d in pairs.detections}
    assert all((tuple(d.bbox_xyxy), d.phrase, d.score) in pair_set for d in merged.detections)
    for i, a in enumerate(merged.detections):
        for b in merged.detections[i + 1:]:
            if a.phrase != b.phrase:
                assert _iou(a.bbox_xyxy, b.bbox_xyxy) <= 0.5 + 1e-6
    # a caption keeps every phrase's boxes: two phrases may name one object
    (caption_default,) = predictor.detect(scene, caption="a circle and a square", phrases=["circle", "square"],
                                          threshold=0.0)
    (caption_pairs,) = predictor.detect(scene, caption="a circle and a square", phrases=["circle", "square"],
                                        threshold=0.0, all_names=True)
    assert caption_default.detections == caption_pairs.detections


def test_cancelled_between_chunks(predictor, scene):
    from glip.engine import DetectionCancelled

    names = [f"category number {i} with a longish descriptive name" for i in range(150)]
    polls = []

    def cancelled() -> bool:
        polls.append(1)
        return len(polls) > 2  # the batch check and the first chunk pass, then stop

    with pytest.raises(DetectionCancelled):
        predictor.detect(scene, classes=names, cancelled=cancelled)
    assert len(polls) == 3
    assert len(predictor.build_prompts(classes=names)) > 2  # stopped before the last chunks ran


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size must be"),
    ({"batch_size": 1.5}, "batch_size must be"),
    ({"max_detections": 0}, "max_detections must be"),
    ({"max_detections": -5}, "max_detections must be"),
])
def test_bad_counts(predictor, scene, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.detect(scene, classes=["circle"], **kwargs)


def test_many_classes_are_chunked_with_image_side_once(predictor, scene, monkeypatch):
    names = [f"category number {i} with a longish descriptive name" for i in range(150)]
    chunks = predictor.build_prompts(classes=names)
    assert len(chunks) > 1 and sum(len(c.prompt.phrases) for c in chunks) == 150
    calls = []
    original = predictor.model.encode_images
    monkeypatch.setattr(predictor.model, "encode_images", lambda x: calls.append(1) or original(x))
    (result,) = predictor.detect([scene], classes=names, threshold=0.0, max_detections=300, all_names=True)
    assert len(calls) == 1
    assert len(result.phrases) == 150
    labels = {d.phrase_index for d in result.detections}
    assert max(labels) >= 80  # no accidental cap at 80 phrases
    assert all(result.phrases[d.phrase_index] == d.phrase for d in result.detections)


def test_chunk_results_equal_a_single_prompt_run(predictor, scene):
    """Detections of one chunk's phrases, merged, are what that chunk alone gives (class-aware NMS)."""
    names = [f"thing {i}" for i in range(120)]
    chunks = predictor.build_prompts(classes=names)
    first = [names[i] for i in range(len(chunks[0].prompt.phrases))]
    (alone,) = predictor.detect(scene, classes=first, threshold=0.0, max_detections=100000, all_names=True)
    (merged,) = predictor.detect(scene, classes=names, threshold=0.0, max_detections=100000, all_names=True)
    from_first = sorted((d.phrase_index, d.bbox_xyxy, d.score) for d in merged.detections if d.phrase_index < len(first))
    expected = sorted((d.phrase_index, d.bbox_xyxy, d.score) for d in alone.detections)
    # the merged run batches chunk 0 with the others (padded text): equal up to float rounding
    assert [row[0] for row in from_first] == [row[0] for row in expected]
    np.testing.assert_allclose([row[1] for row in from_first], [row[1] for row in expected], atol=0.011)
    np.testing.assert_allclose([row[2] for row in from_first], [row[2] for row in expected], atol=1e-5)


def test_batch_equals_single(predictor, scene):
    single = predictor.detect([scene], classes=["circle", "star"], threshold=0.0)
    batched = predictor.detect([scene, scene], classes=["circle", "star"], threshold=0.0, batch_size=2)
    for result in batched:
        assert len(result.detections) == len(single[0].detections)
        for a, b in zip(result.detections, single[0].detections):
            assert a.phrase_index == b.phrase_index
            assert a.score == pytest.approx(b.score, abs=1e-5)
            np.testing.assert_allclose(a.bbox_xyxy, b.bbox_xyxy, atol=1e-2)


def test_caption_with_phrases(predictor, scene):
    (result,) = predictor.detect(scene, caption="a red circle next to a blue square",
                                 phrases=["red circle", "blue square"], threshold=0.0)
    assert result.phrases == ["red circle", "blue square"]
    assert {d.phrase for d in result.detections} <= {"red circle", "blue square"}


def test_inputs_pil_numpy_grayscale(predictor):
    gray = Image.fromarray(np.full((64, 80), 128, dtype=np.uint8), mode="L")
    rgba = np.zeros((64, 80, 4), dtype=np.uint8)
    results = predictor.detect([gray, rgba], classes=["circle"], threshold=0.0)
    assert [(r.width, r.height) for r in results] == [(80, 64), (80, 64)]
    assert results[0].image is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(classes=[]), "no class names"),
    (dict(caption="   "), "caption"),
    (dict(caption="a red circle", phrases=["blue square"]), "blue square"),
    (dict(classes=["a"], caption="b"), "exactly one"),
    (dict(classes="person"), "list"),
    (dict(classes=["circle"], threshold=2.0), "threshold"),
])
def test_bad_prompts(predictor, scene, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.detect(scene, **kwargs)


def test_bad_images(predictor, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    for path in (empty, corrupt, tmp_path / "missing.png"):
        with pytest.raises(ImageError, match=path.name):
            predictor.detect([path], classes=["circle"])


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_device("cuda")
    assert resolve_device(None).type == "cpu"


def test_trimmed_text_padding_gives_the_same_detections(predictor, scene):
    predictor.engine.trim_text_padding = False
    try:
        (full,) = predictor.detect(scene, classes=["circle", "square", "star"], threshold=0.0)
    finally:
        predictor.engine.trim_text_padding = True
    (trimmed,) = predictor.detect(scene, classes=["circle", "square", "star"], threshold=0.0)
    assert len(full.detections) == len(trimmed.detections)
    for a, b in zip(full.detections, trimmed.detections):
        assert a.phrase_index == b.phrase_index
        assert a.score == pytest.approx(b.score, abs=1e-5)
        np.testing.assert_allclose(a.bbox_xyxy, b.bbox_xyxy, atol=1e-2)


def test_a_caption_longer_than_the_window_runs_in_windows(predictor, scene, monkeypatch):
    words = ["red circle", "blue square", "green star", "small circle", "big square"]
    caption = "a " + ", then a ".join(words)
    (whole,) = predictor.detect(scene, caption=caption, phrases=words, threshold=0.0)
    monkeypatch.setattr(predictor, "max_length", 10)
    chunks = predictor.build_prompts(caption=caption, phrases=words)
    assert len(chunks) > 1 and all(c.tokens.num_tokens <= 10 for c in chunks)
    (windowed,) = predictor.detect(scene, caption=caption, phrases=words, threshold=0.0)
    assert windowed.caption == caption and windowed.phrases == words
    assert {d.phrase for d in windowed.detections} <= set(words) and windowed.detections
    assert whole.phrases == words
