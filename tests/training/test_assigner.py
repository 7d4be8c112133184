"""ATSS assignment on hand-made anchors and boxes: which anchors become positive, and for which box.

Anchors and boxes use the legacy "+1" pixel convention of the official model: [0, 0, 9, 9] is a
10x10 box. Two levels are used everywhere: 10x10 anchors (level 0) and larger ones (level 1).
"""

from __future__ import annotations

import torch

from glip.training.assigner import NO_MATCH, atss_assign, box_iou_legacy
from glip.training.loss import GLIPLoss


def square(x: float, y: float, size: float) -> list[float]:
    """xyxy of a size x size box (legacy "+1" widths) whose top-left pixel is (x, y)."""
    return [x, y, x + size - 1, y + size - 1]


def boxes(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


# Level 0: four 10x10 anchors in a row; level 1: three 20x20 anchors in a row (flat indices 4, 5, 6).
ROW = [boxes(*(square(x, 0, 10) for x in (0, 10, 20, 30))), boxes(*(square(x, 0, 20) for x in (0, 20, 40)))]


def positives(matched: torch.Tensor) -> dict[int, int]:
    """{anchor index: box index} of the positive anchors."""
    return {int(i): int(matched[i]) for i in (matched != NO_MATCH).nonzero().flatten()}


def test_legacy_iou_counts_the_last_pixel() -> None:
    iou = box_iou_legacy(boxes(square(0, 0, 10)), boxes(square(0, 0, 10), square(5, 0, 10), square(0, 0, 20)))
    # Same box: 1. Shifted by half: 50 / (100 + 100 - 50). Inside a 20x20 box: 100 / 400.
    torch.testing.assert_close(iou, torch.tensor([[1.0, 50 / 150, 0.25]]))


def test_each_box_takes_the_anchors_above_mean_plus_std_of_its_candidates() -> None:
    small, large = square(0, 0, 10), square(20, 0, 20)
    matched = atss_assign(ROW, boxes(small, large), top_k=2).matched_box
    # Small box, centre (4.5, 4.5). Candidates (2 nearest centres per level): anchors 0, 1 and 4, 5
    # with IoUs 1, 0, 0.25, 0 -> threshold mean + std (unbiased) = 0.3125 + 0.473 = 0.786: anchor 0.
    # Large box, centre (29.5, 9.5). Candidates: anchors 2, 3 (IoU 0.25 each: 10x10 inside 20x20),
    # 5 (IoU 1) and 4 or 6 (IoU 0) -> threshold 0.375 + 0.433 = 0.808: anchor 5 only, although the
    # centres of anchors 2 and 3 lie inside the box.
    assert positives(matched) == {0: 0, 5: 1}
    assert matched.shape == (7,)


def test_a_box_equal_to_an_anchor_has_that_anchor_only() -> None:
    matched = atss_assign(ROW, boxes(square(10, 0, 10)), top_k=3).matched_box
    # Candidates: anchors 1 (IoU 1), 0 and 2 (0), 4 (0.25), 5 and 6 (0) -> threshold 0.609.
    assert positives(matched) == {1: 0}


def test_anchor_centre_must_lie_inside_the_box_by_more_than_a_hundredth() -> None:
    # Box [0, 0, x2, 9]: anchor 0 (centre x 4.5) overlaps it most and is above the threshold
    # (x2 = 5: IoUs 0.6, 0, 0.15, 0 -> threshold 0.47; x2 = 3: 0.4, 0, 0.1, 0 -> 0.31); its centre's
    # margin to the right edge is x2 - 4.5.
    for x2, inside in [(5.0, True), (4.52, True), (4.505, False), (4.5, False), (3.0, False)]:
        matched = atss_assign(ROW, boxes([0.0, 0.0, x2, 9.0]), top_k=2).matched_box
        assert positives(matched) == ({0: 0} if inside else {}), x2


def test_an_anchor_claimed_by_two_boxes_goes_to_the_highest_iou() -> None:
    # Both boxes select anchor 1 ([10, 0, 19, 9]) on their own: the small box inside it (8x8, IoU
    # 0.64; candidates 0.64, 0, 0.16, 0 -> threshold 0.503) and the wider box around it (12x10, IoU
    # 100 / 120 = 0.833). The official rule is the highest IoU, so the wider box wins (a
    # smallest-area rule, as in FCOS, would pick the small one), whatever the order of the boxes.
    inner, outer = [11.0, 1.0, 18.0, 8.0], [9.0, 0.0, 20.0, 9.0]
    assert positives(atss_assign(ROW, boxes(inner), top_k=2).matched_box) == {1: 0}
    assert positives(atss_assign(ROW, boxes(outer), top_k=2).matched_box) == {1: 0}
    assert positives(atss_assign(ROW, boxes(inner, outer), top_k=2).matched_box) == {1: 1}
    assert positives(atss_assign(ROW, boxes(outer, inner), top_k=2).matched_box) == {1: 0}


def test_no_boxes_leaves_every_anchor_negative() -> None:
    matched = atss_assign(ROW, torch.zeros((0, 4)), top_k=9).matched_box
    assert matched.shape == (7,) and matched.dtype == torch.long
    assert (matched == NO_MATCH).all()
    # Through the loss: all-zero token targets, no positive anchor.
    tokens, matched_boxes, positive = GLIPLoss().assign(ROW, [{"boxes": torch.zeros((0, 4)),
                                                               "positive_map": torch.zeros((0, 6))}])
    assert tokens.shape == (1, 7, 6) and not tokens.any()
    assert matched_boxes.shape == (1, 7, 4) and not positive.any()


def test_top_k_larger_than_a_level_takes_the_whole_level() -> None:
    # 9 candidates asked per level, 4 and 3 available: every anchor is a candidate; IoUs with the
    # small box are 1, 0, 0, 0, 0.25, 0, 0 -> threshold 0.179 + 0.374 = 0.553: anchor 0.
    assert positives(atss_assign(ROW, boxes(square(0, 0, 10)), top_k=9).matched_box) == {0: 0}
