"""The teacher: noun phrases and spans, strictly-above thresholds, per-phrase NMS and caps, min boxes,
bad images and captions as error results."""

from __future__ import annotations


import pytest
import torch
from torchvision.ops import box_iou

from glip.labelling.phrases import NoNounPhrase, noun_phrases
from glip.labelling.sources import Pair
from glip.labelling.teacher import Teacher
from glip.predictor import GLIPPredictor
from labelling_helpers import picture

CAPTION = "a red star and a red star above the blue ring"


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint):
    return GLIPPredictor.from_pretrained(tiny_checkpoint, device="cpu")


def _pairs(count: int = 2) -> list[Pair]:
    return [Pair("s", str(i), picture(i, (40 + 8 * i, 32)), CAPTION, {}, "png") for i in range(count)]


def test_noun_phrases_each_occurrence_with_spans_into_the_unchanged_caption():
    spans = noun_phrases(CAPTION)
    assert [CAPTION[s:e] for s, e in spans] == ["a red star", "a red star", "the blue ring"]
    assert spans[0] != spans[1]
    caption = "  Two RED Stars, one ring. "
    assert [caption[s:e] for s, e in noun_phrases(caption)] == ["Two RED Stars", "one ring"]
    for bad in ("running quickly", "   "):
        with pytest.raises(NoNounPhrase):
            noun_phrases(bad)


def test_every_box_strictly_above_min_score_is_kept_per_phrase(predictor):
    everything = Teacher(predictor, min_score=0.0).label(_pairs())
    scores = sorted({r["score"] for r in everything[0].regions})
    cut = scores[len(scores) // 2]  # a score some box has exactly
    kept = Teacher(predictor, min_score=cut).label(_pairs())
    assert kept[0].regions == [r for r in everything[0].regions if r["score"] > cut]
    assert all(r["score"] > cut for r in kept[0].regions) and len(kept[0].regions) < len(everything[0].regions)
    result = kept[0]
    assert (result.status, result.width, result.height, result.phrases) == ("kept", 40, 32, 3)
    for region in result.regions:
        (start, end), = region["tokens_positive"]
        assert CAPTION[start:end] == region["phrase"]
        x1, y1, x2, y2 = region["bbox"]
        assert 0 <= x1 < x2 <= 40 and 0 <= y1 < y2 <= 32
    phrases = [tuple(map(tuple, r["tokens_positive"])) for r in result.regions]
    assert phrases == sorted(phrases)  # phrase order, and within a phrase ...
    for span in set(phrases):
        mine = [r["score"] for r, p in zip(result.regions, phrases) if p == span]
        assert mine == sorted(mine, reverse=True)  # ... highest score first


def test_cap_and_nms_per_phrase(predictor):
    everything = Teacher(predictor, min_score=0.45).label(_pairs(1))[0].regions
    capped = Teacher(predictor, min_score=0.45, max_boxes_per_phrase=2).label(_pairs(1))[0].regions
    by_phrase = {}
    for region in everything:
        by_phrase.setdefault(region["tokens_positive"][0][0], []).append(region)
    assert capped == [r for rs in by_phrase.values() for r in rs[:2]]
    thinned = Teacher(predictor, min_score=0.45, nms=0.3).label(_pairs(1))[0].regions
    assert 0 < len(thinned) < len(everything)
    for start in by_phrase:
        boxes = torch.tensor([r["bbox"] for r in thinned if r["tokens_positive"][0][0] == start])
        iou = box_iou(boxes, boxes) - torch.eye(len(boxes))
        assert float(iou.max()) <= 0.3 + 1e-3


def test_pairs_with_too_few_boxes_are_dropped(predictor):
    results = Teacher(predictor, min_score=0.0, min_boxes=100_000).label(_pairs(1))
    assert results[0].status == "dropped" and results[0].phrases == 3 and results[0].regions
    results = Teacher(predictor, min_score=0.99).label(_pairs(1))
    assert results[0].status == "dropped" and results[0].regions == []


def test_bad_pairs_are_error_results_and_the_rest_is_labelled(predictor, tmp_path):
    pairs = [Pair("s", "corrupt", b"\x89PNG but not really", CAPTION),
             Pair("s", "text", b"hello, I am a text file", CAPTION),
             Pair("s", "nocaption", picture(0), None),
             Pair("s", "nonoun", picture(0), "running quickly"),
             Pair("s", "missing", tmp_path / "missing.png", CAPTION),
             Pair("s", "huge", picture(0, (64, 64)), CAPTION),
             Pair("s", "good", picture(1), CAPTION)]
    results = Teacher(predictor, min_score=0.0, max_pixels=3000).label(pairs)
    reasons = {r.pair.key: r.error for r in results}
    assert [r.status for r in results] == ["error"] * 6 + ["kept"]
    assert "not an image or corrupt" in reasons["corrupt"] and "s/corrupt" in reasons["corrupt"]
    assert "not an image or corrupt" in reasons["text"]
    assert reasons["nocaption"] == "missing caption"
    assert "no noun phrase" in reasons["nonoun"]
    assert "missing.png" in reasons["missing"]
    assert "megapixel" in reasons["huge"] or "pixels" in reasons["huge"]
    assert results[-1].image_extension == "png"


def test_a_batch_gives_the_same_boxes_as_one_pair_at_a_time(predictor):
    teacher = Teacher(predictor, min_score=0.5)
    pairs = [Pair("s", str(i), picture(i, (40, 32)), CAPTION, {}, "png") for i in range(3)]
    together = teacher.label(pairs)
    alone = [teacher.label([pair])[0] for pair in pairs]
    for a, b in zip(together, alone):
        assert [r["phrase"] for r in a.regions] == [r["phrase"] for r in b.regions]
        assert torch.allclose(torch.tensor([r["bbox"] for r in a.regions]),
                              torch.tensor([r["bbox"] for r in b.regions]), atol=0.05)


def test_a_long_caption_is_chunked_within_the_window(predictor):
    long_caption = ", ".join(f"a red star number {i}" for i in range(60))
    (result,) = Teacher(predictor, min_score=0.0).label([Pair("s", "long", picture(0), long_caption, {}, "png")])
    assert result.status == "kept" and result.phrases == len(noun_phrases(long_caption))
    for region in result.regions:
        (start, end), = region["tokens_positive"]
        assert long_caption[start:end] == region["phrase"]
