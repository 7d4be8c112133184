"""Tests of the ATSS post-processor on hand-made head outputs: phrase scores, candidates, legacy NMS,
the per-image cap, clipping, prompt chunks and more than 80 phrases."""

from __future__ import annotations

import math

import pytest
import torch

from glip.config import PostProcessConfig
from glip.modeling.anchors import level_anchors
from glip.modeling.head import HeadOutput
from glip.modeling.postprocess import Detections, PostProcessor, clip_boxes, phrase_scores
from glip.prompts import build_class_prompt, tokenize_prompt

LOW = -20.0  # a token logit whose probability is ~2e-9: never a candidate


def _head(logits: list[torch.Tensor], shapes: list[tuple[int, int]],
          centerness: list[torch.Tensor] | None = None, deltas: list[torch.Tensor] | None = None) -> HeadOutput:
    """A one-image head output from per-level token logits [H*W, L] (centerness logits [H*W] and box
    deltas [H*W, 4] default to 0: sigmoid(centerness) = 0.5 and boxes = anchors)."""
    token_logits, centers, boxes, visual = [], [], [], []
    for level, ((h, w), logit) in enumerate(zip(shapes, logits)):
        token_logits.append(logit[None])  # [1, HW, L]
        center = centerness[level] if centerness is not None else torch.zeros(h * w)
        centers.append(center.reshape(1, 1, h, w))
        delta = deltas[level] if deltas is not None else torch.zeros(h * w, 4)
        boxes.append(delta.t().reshape(1, 4, h, w))
        visual.append(torch.zeros(1, 1, h, w))
    return HeadOutput(visual=visual, text=torch.zeros(1, logits[0].shape[1], 1), box_regression=boxes,
                      centerness=centers, token_logits=token_logits)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _anchors(shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    sizes, strides = (64, 128, 256, 512, 1024), (8, 16, 32, 64, 128)
    return level_anchors(sizes[:len(shapes)], strides[:len(shapes)], shapes)


def _detections(boxes: list[list[float]], scores: list[float], labels: list[int],
                dtype: torch.dtype = torch.float32) -> Detections:
    return Detections(torch.tensor(boxes, dtype=dtype), torch.tensor(scores, dtype=dtype), torch.tensor(labels))


# --- phrase scores and candidates ----------------------------------------------------------------


def test_phrase_score_is_the_mean_of_its_token_probabilities() -> None:
    tokenized = tokenize_prompt(build_class_prompt(["cat", "whiskers"]))
    assert tokenized.token_indices == [[1], [3, 4, 5]]  # "whiskers" is three WordPieces
    probs = torch.zeros(2, 8)
    probs[0, 1], probs[0, 3:6] = 0.9, torch.tensor([0.2, 0.4, 0.9])
    probs[1, 1], probs[1, 3:6] = 0.1, torch.tensor([0.0, 0.0, 0.3])
    probs[:, 2] = 1.0  # the "." between the names belongs to no phrase
    scores = phrase_scores(probs, tokenized.token_indices)
    torch.testing.assert_close(scores, torch.tensor([[0.9, 0.5], [0.1, 0.1]]))


def test_candidates_need_a_phrase_score_above_the_threshold() -> None:
    shapes = [(2, 2)]
    logits = torch.full((4, 3), LOW)
    logits[0, 1] = _logit(0.06)  # phrase 0 at location 0: kept
    logits[1, 1] = _logit(0.04)  # phrase 0 at location 1: below 0.05
    logits[3, 2] = _logit(0.5)  # phrase 1 at location 3: kept
    processor = PostProcessor(PostProcessConfig())
    found = processor.candidates(_head([logits], shapes), _anchors(shapes), [[1], [2]], 0, (1000, 1000))
    order = torch.argsort(found.labels)
    assert found.labels[order].tolist() == [0, 1]
    # score = sqrt(phrase score * sigmoid(centerness)) with centerness logit 0.
    torch.testing.assert_close(found.scores[order], torch.tensor([math.sqrt(0.06 * 0.5), math.sqrt(0.25)]))
    # Zero deltas: the boxes are the anchors of locations 0 and 3, (x, y) = (0, 0) and (1, 1),
    # clipped at 0 on the top/left.
    expected = torch.tensor([[0.0, 0.0, 35.0, 35.0], [0.0, 0.0, 43.0, 43.0]])
    torch.testing.assert_close(found.boxes[order], expected)


def test_top_n_per_level_ranks_by_score_times_centerness() -> None:
    shapes = [(1, 3), (1, 1)]
    level0 = torch.full((3, 2), LOW)
    level0[:, 1] = torch.tensor([_logit(0.9), _logit(0.3), _logit(0.2)])
    level1 = torch.full((1, 2), _logit(0.1))
    centerness = [torch.tensor([-3.0, 3.0, 3.0]), torch.tensor([0.0])]
    processor = PostProcessor(PostProcessConfig(pre_nms_top_n=2))
    found = processor.candidates(_head([level0, level1], shapes, centerness), _anchors(shapes), [[1]], 0,
                                 (1000, 1000))
    # Level 0 keeps locations 1 and 2 (0.3 * 0.95 and 0.2 * 0.95 beat 0.9 * 0.05); level 1 its only one.
    kept = sorted(round(s * s, 4) for s in found.scores.tolist())
    ctr = 1 / (1 + math.exp(-3.0))
    assert kept == sorted(round(v, 4) for v in (0.3 * ctr, 0.2 * ctr, 0.1 * 0.5))


def test_candidate_boxes_are_decoded_and_clipped_to_the_image() -> None:
    shapes = [(1, 2)]
    logits = torch.full((2, 2), _logit(0.5))
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 10.0, 0.0, 0.0]])  # location 1 moves by 64 px
    processor = PostProcessor(PostProcessConfig())
    found = processor.candidates(_head([logits], shapes, deltas=[deltas]), _anchors(shapes), [[1]], 0, (50, 90))
    boxes = found.boxes[torch.argsort(found.boxes[:, 2])]
    # [-28, -28, 35, 35] and [-20 + 64, -28 + 64, 43 + 64, 35 + 64] inside width 90, height 50.
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 35.0, 35.0], [44.0, 36.0, 89.0, 49.0]]))


def test_clip_boxes_to_w_minus_1_and_h_minus_1() -> None:
    boxes = torch.tensor([[-5.0, -3.0, 120.0, 70.0], [10.0, 20.0, 30.0, 40.0], [150.0, 80.0, 160.0, 90.0]])
    clipped = clip_boxes(boxes, (60, 100))
    assert clipped.tolist() == [[0.0, 0.0, 99.0, 59.0], [10.0, 20.0, 30.0, 40.0], [99.0, 59.0, 99.0, 59.0]]


# --- NMS and the per-image cap ---------------------------------------------------------------------


def test_nms_uses_plus_one_iou() -> None:
    processor = PostProcessor(PostProcessConfig())
    # Shift 0.9 of 3-px-wide boxes: continuous IoU 2.1 / 3.9 = 0.54, "+1" IoU 3.1 / 4.9 = 0.63 > 0.6.
    suppressed = processor.select(_detections([[0, 0, 3, 3], [0.9, 0, 3.9, 3]], [0.9, 0.8], [0, 0]))
    assert suppressed.scores.tolist() == [pytest.approx(0.9)]
    # "+1" IoU is never below the continuous one, so the converse is: "+1" IoU 2.9 / 5.1 = 0.57 < 0.6
    # keeps both, and so does a pair whose continuous IoU (0.46) alone would be compared.
    kept = processor.select(_detections([[0, 0, 3, 3], [1.1, 0, 4.1, 3]], [0.9, 0.8], [0, 0]))
    assert len(kept) == 2


def test_nms_is_greedy_and_a_suppressed_box_suppresses_nothing() -> None:
    processor = PostProcessor(PostProcessConfig())
    # 10-px boxes shifted by 2 ("+1" IoU 8 / 12 = 0.67) and by 4 from the first (6 / 14 = 0.43).
    boxes = [[2, 0, 11, 9], [0, 0, 9, 9], [4, 0, 13, 9]]
    kept = processor.select(_detections(boxes, [0.8, 0.9, 0.7], [5, 5, 5]))
    assert kept.boxes.tolist() == [[0, 0, 9, 9], [4, 0, 13, 9]]
    empty = processor.select(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)))
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


def test_nms_never_suppresses_across_labels() -> None:
    processor = PostProcessor(PostProcessConfig())
    same_box = [[10, 10, 50, 50]] * 3
    kept = processor.select(_detections(same_box, [0.9, 0.8, 0.7], [0, 1, 0]))
    assert kept.labels.tolist() == [0, 1]
    assert kept.scores.tolist() == [pytest.approx(0.9), pytest.approx(0.8)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_does_not_suppress_at_exactly_the_threshold(dtype: torch.dtype) -> None:
    processor = PostProcessor(PostProcessConfig())
    # "+1" boxes 4x4 shifted by 1: IoU = 12 / 20 = 0.6 exactly, and the rule is "suppress if IoU > 0.6".
    # In float32 that IoU is 0.6000000238; compared with the double 0.6 (as torchvision's CPU nms does)
    # it would suppress; the official kernel compares float with float, and keeps both.
    kept = processor.select(_detections([[0, 0, 3, 3], [1, 0, 4, 3]], [0.9, 0.8], [0, 0], dtype))
    assert len(kept) == 2


def test_per_image_cap_keeps_ties_at_the_cut() -> None:
    processor = PostProcessor(PostProcessConfig(detections_per_image=3))
    boxes = [[20 * i, 0, 20 * i + 10, 10] for i in range(5)]  # disjoint
    tied = processor.select(_detections(boxes, [0.7, 0.9, 0.1, 0.7, 0.8], [0, 1, 2, 3, 4]))
    assert tied.scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.7])
    assert tied.labels.tolist() == [1, 4, 0, 3]  # highest first, ties in their original order
    untied = processor.select(_detections(boxes, [0.7, 0.9, 0.1, 0.6, 0.8], [0, 1, 2, 3, 4]))
    assert untied.labels.tolist() == [1, 4, 0]


# --- several prompts, many phrases, rescaling ------------------------------------------------------


def test_candidates_of_prompt_chunks_merge_with_label_offsets() -> None:
    shapes = [(1, 2)]
    first = torch.full((2, 4), LOW)
    first[0, 1] = _logit(0.8)  # chunk 1, phrase 0 at location 0
    first[1, 2] = _logit(0.6)  # chunk 1, phrase 1 at location 1
    second = torch.full((2, 4), LOW)
    second[0, 2] = _logit(0.7)  # chunk 2, phrase 1 (global 3) at location 0: same box as above
    processor = PostProcessor(PostProcessConfig())
    anchors = _anchors(shapes)
    parts = [processor.candidates(_head([first], shapes), anchors, [[1], [2]], 0, (200, 200), label_offset=0),
             processor.candidates(_head([second], shapes), anchors, [[1], [2]], 0, (200, 200), label_offset=2)]
    merged = processor.select(Detections.cat(parts))
    assert merged.labels.tolist() == [0, 3, 1]
    assert torch.equal(merged.boxes[0], merged.boxes[1])  # different labels: both survive NMS


def test_more_than_80_phrases_give_labels_above_80() -> None:
    num_phrases = 100
    shapes = [(10, 10)]
    logits = torch.full((100, num_phrases + 2), LOW)
    for phrase in range(num_phrases):
        logits[phrase, phrase + 1] = _logit(0.5 + phrase / 1000)  # location i favours phrase i
    token_indices = [[phrase + 1] for phrase in range(num_phrases)]
    processor = PostProcessor(PostProcessConfig(detections_per_image=100))
    found = processor.candidates(_head([logits], shapes), _anchors(shapes), token_indices, 0, (80, 80))
    kept = processor.select(found)
    assert sorted(kept.labels.tolist()) == list(range(num_phrases))
    assert kept.labels[0].item() == num_phrases - 1  # the best score belongs to the last phrase


def test_rescaled_detections_scale_x_and_y_separately() -> None:
    detections = _detections([[10, 20, 30, 40]], [0.5], [7])
    rescaled = detections.rescaled(from_hw=(100, 200), to_hw=(50, 400))
    assert rescaled.boxes.tolist() == [[20.0, 10.0, 60.0, 20.0]]
    assert rescaled.scores.tolist() == [0.5] and rescaled.labels.tolist() == [7]
