"""Faulty annotations and predictions: clear errors with counts, never a silently wrong AP."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_helpers import coco, det
from PIL import Image

from glip.evaluation import (EvaluationError, check_detection_predictions, detection_dataset_from_coco,
                             evaluate_detection, load_detection_dataset)

A = [10, 10, 20, 20]


def dataset(gt: dict):
    return detection_dataset_from_coco(gt, source="gt.json")


def test_duplicate_image_ids_are_counted():
    gt = coco([1, 2, 2, 3, 3], [(1, 1, A)])
    with pytest.raises(EvaluationError, match=r"gt.json: 2 records with a duplicate image id \(2, 3\)"):
        dataset(gt)


def test_annotations_of_unknown_images_and_categories():
    gt = coco([1], [(1, 1, A), (5, 1, A), (6, 1, A), (1, 9, A)])
    with pytest.raises(EvaluationError) as error:
        dataset(gt)
    assert "2 records with an unknown image id (5, 6)" in str(error.value)
    assert "1 record with an unknown category id (9)" in str(error.value)


def test_bad_boxes_and_duplicate_categories():
    gt = coco([1], [(1, 1, A), (1, 1, [0, 0, -3, 4]), (1, 1, [0, 0, float("nan"), 1])])
    with pytest.raises(EvaluationError, match="2 records with a bbox that is not"):
        dataset(gt)
    gt = coco([1], [(1, 1, A)], [(1, "cat"), (1, "dog")])
    with pytest.raises(EvaluationError, match="duplicate category id"):
        dataset(gt)


def test_empty_dataset_and_no_ground_truth():
    with pytest.raises(EvaluationError, match="'images' list is empty"):
        dataset(coco([], []))
    with pytest.raises(EvaluationError, match="no ground-truth boxes .* AP is undefined"):
        dataset(coco([1, 2], []))


def test_missing_annotation_file(tmp_path):
    with pytest.raises(EvaluationError, match="does not exist"):
        load_detection_dataset(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EvaluationError, match=r"bad.json:1: invalid JSON"):
        load_detection_dataset(tmp_path / "bad.json")


def test_predictions_with_unknown_ids_are_counted():
    data = dataset(coco([1, 2], [(1, 1, A)]))
    predictions = [det(1, 1, A, 0.9), det(7, 1, A, 0.5), det(8, 1, A, 0.5), det(8, 1, A, 0.4), det(1, 42, A, 0.3)]
    with pytest.raises(EvaluationError) as error:
        check_detection_predictions(predictions, {1, 2}, set(data.category_ids), "preds.json")
    message = str(error.value)
    assert message.startswith("preds.json: 3 records with an unknown image id (7, 8)")
    assert "1 record with an unknown category id (42)" in message


def test_string_ids_get_a_hint_and_malformed_records_are_named():
    with pytest.raises(EvaluationError, match="'1' is not 1"):
        check_detection_predictions([det("1", 1, A, 0.9)], {1}, {1})
    bad = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5},
           {"image_id": 1, "category_id": 1, "bbox": A, "score": float("inf")}, "junk"]
    with pytest.raises(EvaluationError) as error:
        check_detection_predictions(bad, {1}, {1})
    assert "1 record with a bbox" in str(error.value) and "1 record with a score" in str(error.value)
    assert "1 record with a value that is not a JSON object" in str(error.value)


def write_images(folder, ids, size=(40, 30)):
    for image_id in ids:
        Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{image_id}.png")


def test_missing_image_files_stop_the_model_run_unless_skipped(tmp_path, small_predictor):
    gt = coco([1, 2, 3], [(1, 1, A), (2, 1, A), (3, 1, A)], size=(40, 30))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    write_images(tmp_path, [1])
    data = load_detection_dataset(tmp_path / "gt.json")
    with pytest.raises(EvaluationError, match=r"2 of the 3 images have no image file .*\('2.png', '3.png'\)"):
        evaluate_detection(data, small_predictor)
    result = evaluate_detection(data, small_predictor, skip_missing_images=True)
    assert result.num_images == 1
    assert any("evaluated on 1 of the 3 images" in note for note in result.notes)


def test_image_of_another_size_than_recorded(tmp_path, small_predictor):
    gt = coco([1], [(1, 1, A)], size=(40, 30))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    write_images(tmp_path, [1], size=(50, 30))
    with pytest.raises(EvaluationError, match="1 image without the size .* records.*1.png is 50x30, recorded 40x30"):
        evaluate_detection(load_detection_dataset(tmp_path / "gt.json"), small_predictor)


def test_predictions_and_predictor_are_exclusive():
    data = dataset(coco([1], [(1, 1, A)]))
    with pytest.raises(ValueError, match="either a predictor"):
        evaluate_detection(data)
