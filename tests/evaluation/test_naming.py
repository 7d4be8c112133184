"""Naming accuracy: each object's top-scoring overlapping name against its category."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glip.evaluation.detection_data import detection_dataset_from_coco
from glip.evaluation.naming import MISSED, naming_accuracy
from glip.evaluation.plots import plot_naming_confusion
from glip.shapes.report import write_naming


def dataset():
    return detection_dataset_from_coco({
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20]},   # star
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 20, 20]},  # heart
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [10, 10, 30, 30]},  # oval
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [60, 60, 30, 30], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "star"}, {"id": 2, "name": "heart"}, {"id": 3, "name": "oval"}],
    })


def detection(image, category, box, score):
    return {"image_id": image, "category_id": category, "bbox": box, "score": score}


def test_the_top_scoring_overlapping_name_decides_whatever_the_names_below_it():
    predictions = [
        detection(1, 1, [0, 0, 20, 20], 0.6), detection(1, 2, [1, 1, 20, 20], 0.9),  # star named heart
        detection(1, 2, [50, 50, 20, 20], 0.8), detection(1, 1, [50, 50, 20, 20], 0.7),  # heart right
        detection(1, 1, [0, 0, 20, 20], 0.99),  # ... but a better star box on the first object wins
        detection(2, 3, [80, 0, 10, 10], 0.9),  # far from the oval: the oval is missed
        detection(2, 1, [60, 60, 30, 30], 0.9),  # on the crowd box: crowd objects are not counted
    ]
    result = naming_accuracy(dataset(), predictions)
    assert result.objects == 3 and result.named_right == 2 and result.missed == 1
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.confusion.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert result.per_category() == {"star": 1.0, "heart": 1.0, "oval": 0.0}
    assert result.confused() == [("oval", MISSED, 1)]


def test_wrong_names_land_in_the_confusion_matrix_and_the_iou_threshold_counts():
    predictions = [detection(1, 2, [0, 0, 20, 20], 0.9), detection(2, 1, [10, 10, 30, 22], 0.5)]
    result = naming_accuracy(dataset(), predictions)  # the oval's box: IoU 22/30 = 0.73
    assert result.confused() == [("star", "heart", 1), ("heart", MISSED, 1), ("oval", "star", 1)]
    assert result.accuracy == 0.0
    strict = naming_accuracy(dataset(), predictions, iou_threshold=0.8)
    assert strict.confusion[2].tolist() == [0, 0, 0, 1]  # below 0.8: the oval counts as missed
    with pytest.raises(ValueError, match="iou_threshold"):
        naming_accuracy(dataset(), predictions, iou_threshold=0.0)


def test_no_predictions_means_every_object_missed():
    result = naming_accuracy(dataset(), [])
    assert result.missed == result.objects == 3 and result.accuracy == 0.0


def test_confusion_is_written_as_json_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    result = naming_accuracy(dataset(), [detection(1, 2, [0, 0, 20, 20], 0.9)])
    written = write_naming(result, tmp_path / "plots", "nano")
    assert [p.name for p in written] == ["nano-naming.json", "nano-naming.png"]
    saved = json.loads(written[0].read_text())
    assert np.array_equal(saved["confusion"], result.confusion) and saved["missed_column"] == MISSED
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_naming_confusion(result, tmp_path / "again.png").is_file()
