"""Tests of `one_name_per_object` on hand-made boxes: each object once, under its best-scoring name."""

from __future__ import annotations

import pytest
import torch

from glip.modeling.postprocess import Detections, one_name_per_object


def _detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
                      torch.tensor(labels, dtype=torch.long))


def test_best_scoring_name_wins_on_one_object():
    # the README's first picture: one small cross, seen as "cross" 0.59 and "star" 0.52
    detections = _detections([[50.9, 284.5, 83.7, 317.9], [50.9, 284.5, 83.7, 317.9], [149.5, 153.4, 185.7, 190.0]],
                             [0.52, 0.59, 0.47], [0, 3, 2])
    kept = one_name_per_object(detections)
    assert kept.labels.tolist() == [3, 2]
    assert kept.scores.tolist() == pytest.approx([0.59, 0.47])


def test_same_name_boxes_are_left_to_the_class_aware_nms():
    # two overlapping boxes of one name survived the class-aware NMS: two objects, both stay
    detections = _detections([[0, 0, 10, 10], [0, 0, 10, 8]], [0.9, 0.8], [1, 1])
    assert one_name_per_object(detections, iou_threshold=0.5).scores.tolist() == pytest.approx([0.9, 0.8])


def test_only_kept_boxes_suppress():
    # B overlaps A (another name) and goes; C overlaps only B, which is gone, so C stays
    a, b, c = [0, 0, 10, 10], [0, 2, 10, 12], [0, 5, 10, 15]  # IoU(A, B) = 8/12, IoU(B, C) = 7/13, IoU(A, C) = 5/15
    kept = one_name_per_object(_detections([a, b, c], [0.9, 0.8, 0.7], [0, 1, 2]), iou_threshold=0.5)
    assert kept.labels.tolist() == [0, 2]


def test_iou_exactly_at_the_threshold_is_kept():
    detections = _detections([[0, 0, 10, 10], [0, 0, 10, 5]], [0.9, 0.8], [0, 1])  # IoU = 50 / 100 = 0.5
    assert len(one_name_per_object(detections, iou_threshold=0.5)) == 2
    assert one_name_per_object(detections, iou_threshold=0.49).labels.tolist() == [0]


def test_a_small_object_on_a_large_one_of_another_name_stays():
    # no containment rule: a square drawn on a large star is a real object (IoU 0.04)
    detections = _detections([[0, 0, 100, 100], [40, 40, 60, 60]], [0.9, 0.5], [0, 1])
    assert one_name_per_object(detections).labels.tolist() == [0, 1]


def test_output_is_highest_score_first_whatever_the_input_order():
    detections = _detections([[0, 0, 5, 5], [20, 20, 30, 30], [40, 40, 50, 50], [20, 20, 30, 29]],
                             [0.3, 0.6, 0.9, 0.7], [0, 1, 2, 3])
    kept = one_name_per_object(detections)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7, 0.3])
    assert kept.labels.tolist() == [2, 3, 0]
    assert kept.boxes[1].tolist() == [20, 20, 30, 29]


def test_empty_and_single_inputs():
    empty = Detections(torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.float64),
                       torch.zeros(0, dtype=torch.long))
    kept = one_name_per_object(empty)
    assert len(kept) == 0 and kept.boxes.shape == (0, 4)
    assert (kept.boxes.dtype, kept.scores.dtype, kept.labels.dtype) == (torch.float64, torch.float64, torch.long)
    single = _detections([[1, 2, 3, 4]], [0.5], [7])
    assert one_name_per_object(single).labels.tolist() == [7]


def test_dtypes_are_kept():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40]], dtype=torch.float16)
    scores = torch.tensor([0.4, 0.6, 0.5], dtype=torch.float16)
    detections = Detections(boxes, scores, torch.tensor([0, 1, 0], dtype=torch.int32))
    kept = one_name_per_object(detections)
    assert (kept.boxes.dtype, kept.scores.dtype, kept.labels.dtype) == (torch.float16, torch.float16, torch.int32)
    assert kept.labels.tolist() == [1, 0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_is_kept():
    detections = _detections([[0, 0, 10, 10], [0, 0, 10, 10]], [0.4, 0.6], [0, 1])
    cuda = Detections(detections.boxes.cuda(), detections.scores.cuda(), detections.labels.cuda())
    kept = one_name_per_object(cuda)
    assert kept.boxes.is_cuda and kept.scores.is_cuda and kept.labels.is_cuda
    assert kept.labels.tolist() == [1]


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_iou_threshold_outside_zero_one_is_an_error(threshold):
    with pytest.raises(ValueError, match="iou_threshold must be within"):
        one_name_per_object(_detections([[0, 0, 1, 1]], [0.5], [0]), iou_threshold=threshold)
