"""Box AP on hand-built cases: exact answers worked out by hand, and pycocotools run directly."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import coco, det, pycocotools_stats

from glip.evaluation import (DetectionProtocol, check_detection_predictions, compute_detection_metrics,
                             detection_dataset_from_coco)

A = [10, 10, 20, 20]
B = [50, 50, 20, 20]
FAR = [0, 80, 10, 10]


def metrics(ground_truth: dict, predictions: list[dict], protocol: DetectionProtocol | None = None):
    dataset = detection_dataset_from_coco(ground_truth)
    checked = check_detection_predictions(predictions, {i.id for i in dataset.images}, set(dataset.category_ids))
    return compute_detection_metrics(dataset, checked, protocol)


def test_perfect_predictions_give_ap_1():
    gt = coco([1, 2], [(1, 1, A), (1, 2, B), (2, 1, B)])
    result = metrics(gt, [det(1, 1, A, 0.9), det(1, 2, B, 0.8), det(2, 1, B, 0.7)])
    assert result.metrics["AP"] == pytest.approx(1.0)
    assert result.metrics["AP50"] == pytest.approx(1.0) and result.metrics["AR@100"] == pytest.approx(1.0)


def test_false_positive_between_two_hits():
    # Ranked: hit, miss, hit -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; interpolated 1 up to
    # recall 0.50 (51 of the 101 thresholds) and 2/3 beyond (50): AP = (51 + 50 * 2/3) / 101.
    gt = coco([1], [(1, 1, A), (1, 1, B)])
    result = metrics(gt, [det(1, 1, A, 0.9), det(1, 1, FAR, 0.8), det(1, 1, B, 0.7)])
    expected = (51 + 50 * 2 / 3) / 101
    assert result.metrics["AP"] == pytest.approx(expected, abs=1e-12)
    assert result.metrics["AP50"] == pytest.approx(expected, abs=1e-12)
    assert result.per_category[0]["AP"] == pytest.approx(expected, abs=1e-12)


def test_iou_of_0_62_counts_at_three_of_ten_thresholds():
    gt = coco([1], [(1, 1, [0, 0, 10, 10])])
    result = metrics(gt, [det(1, 1, [0, 0, 6.2, 10], 0.9)])  # IoU 0.62: a hit at 0.50, 0.55, 0.60
    assert result.metrics["AP"] == pytest.approx(0.3)
    assert result.metrics["AP50"] == pytest.approx(1.0) and result.metrics["AP75"] == pytest.approx(0.0)


def test_per_category_ap_and_undefined_category():
    gt = coco([1], [(1, 1, A), (1, 2, B)])  # category 3 has no ground truth
    result = metrics(gt, [det(1, 1, A, 0.9), det(1, 2, FAR, 0.8), det(1, 3, A, 0.7)])
    by_id = {row["id"]: row for row in result.per_category}
    assert by_id[1]["AP"] == pytest.approx(1.0) and by_id[2]["AP"] == pytest.approx(0.0)
    assert by_id[3]["AP"] is None and by_id[3]["num_predictions"] == 1
    assert result.metrics["AP"] == pytest.approx(0.5)
    assert any("no ground truth" in note for note in result.notes)


def test_equals_pycocotools_run_directly():
    rng = np.random.default_rng(1)
    annotations, predictions = [], []
    for image in range(1, 9):
        for _ in range(int(rng.integers(1, 7))):
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(4, 150, 2)  # small, medium and large boxes
            annotations.append((image, int(rng.integers(1, 4)), [x, y, w, h]))
    gt = coco(list(range(1, 9)), annotations, size=(500, 500))
    for ann in gt["annotations"][::4]:
        ann["iscrowd"] = 1
    for image, category, (x, y, w, h) in annotations:
        for _ in range(3):
            jitter = rng.normal(0, 0.15 * min(w, h), 4)
            wrong = rng.random() < 0.2
            predictions.append(det(image, int(rng.integers(1, 4)) if wrong else category,
                                   [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])],
                                   float(rng.random())))
    ours = metrics(gt, predictions).metrics
    expected = pycocotools_stats(gt, predictions)
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR@1", "AR@10", "AR@100", "ARs@100", "ARm@100", "ARl@100"]
    assert [(-1.0 if ours[k] is None else ours[k]) for k in keys] == pytest.approx(list(expected), abs=1e-12)
    assert 0.1 < ours["AP"] < 0.9


def test_annotation_id_zero_and_duplicate_ids_do_not_change_ap():
    gt = coco([1], [(1, 1, A), (1, 1, B)])
    gt["annotations"][0]["id"] = 0  # pycocotools alone counts a match with id 0 as a miss
    gt["annotations"][1]["id"] = 0
    result = metrics(gt, [det(1, 1, A, 0.9), det(1, 1, B, 0.8)])
    assert result.metrics["AP"] == pytest.approx(1.0)


def test_no_predictions_gives_zero():
    result = metrics(coco([1], [(1, 1, A)]), [])
    assert result.metrics["AP"] == 0.0 and result.num_predictions == 0


C = [10, 50, 20, 20]


def lvis_ground_truth() -> dict:
    gt = coco([1, 2], [(1, 1, A), (2, 1, C), (2, 2, B), (2, 3, A)], [(1, "cat"), (2, "dog"), (3, "bird")])
    for category, frequency in zip(gt["categories"], "rcf"):
        category["frequency"] = frequency
    gt["images"][0].update(neg_category_ids=[2], not_exhaustive_category_ids=[])
    gt["images"][1].update(neg_category_ids=[], not_exhaustive_category_ids=[1])
    return gt


def test_lvis_federated_rules_and_frequency_split():
    predictions = [
        det(1, 1, A, 0.9),  # cat: hit
        det(2, 1, FAR, 0.95),  # cat on image 2: not exhaustively annotated there, unmatched -> ignored
        det(2, 1, C, 0.3),  # cat: hit
        det(1, 2, FAR, 0.8),  # dog on image 1: listed as absent -> a false positive
        det(2, 2, B, 0.5),  # dog: hit, ranked after the false positive -> AP 0.5
        det(1, 3, A, 0.99),  # bird on image 1: neither annotated nor known absent -> dropped
        det(2, 3, A, 0.4),  # bird: hit
    ]
    result = metrics(lvis_ground_truth(), predictions)
    assert result.protocol["name"] == "lvis"
    by_id = {row["id"]: row["AP"] for row in result.per_category}
    assert by_id == pytest.approx({1: 1.0, 2: 0.5, 3: 1.0})
    assert result.metrics["APr"] == pytest.approx(1.0)
    assert result.metrics["APc"] == pytest.approx(0.5)
    assert result.metrics["APf"] == pytest.approx(1.0)
    assert result.metrics["AP"] == pytest.approx(2.5 / 3)
    # Without the federated lists the same predictions score lower (plain COCO rules).
    plain = lvis_ground_truth()
    for image in plain["images"]:
        del image["neg_category_ids"], image["not_exhaustive_category_ids"]
    assert metrics(plain, predictions, DetectionProtocol.coco()).metrics["AP"] < result.metrics["AP"]


def test_lvis_cap_per_image_over_all_categories():
    gt = coco([1], [(1, 1, A), (1, 2, B)])
    predictions = [det(1, 1, A, 0.9), det(1, 2, B, 0.8)]
    capped = DetectionProtocol("lvis", (1000,), per_image_limit=1)
    by_id = {row["id"]: row["AP"] for row in metrics(gt, predictions, capped).per_category}
    assert by_id[1] == pytest.approx(1.0) and by_id[2] == pytest.approx(0.0)


def test_fixed_ap_keeps_top_k_per_category_over_the_dataset():
    gt = coco([1, 2], [(1, 1, A), (2, 1, A)])
    predictions = [det(1, 1, A, 0.8), det(2, 1, A, 0.9)]
    result = metrics(gt, predictions, DetectionProtocol.fixed_ap(1))
    # Only the 0.9 detection survives: recall 1/2 at precision 1 -> 51 of the 101 thresholds.
    assert result.metrics["AP"] == pytest.approx(51 / 101)
    assert result.num_predictions == 1 and result.protocol["max_dets"] == ["all"]
    # No per-image cap: 150 detections in one image all count (COCO would keep 100).
    many = coco([1], [(1, 1, [x, 0, 1, 1]) for x in range(150)], size=(200, 10))
    predictions = [det(1, 1, [x, 0, 1, 1], 1.0 - x / 1000) for x in range(150)]
    assert metrics(many, predictions, DetectionProtocol.fixed_ap()).metrics["AP"] == pytest.approx(1.0)
    assert metrics(many, predictions, DetectionProtocol.coco()).metrics["AP"] < 0.7
