"""The one COCO reader: the same checks for training and evaluation, each with its own policy."""

from __future__ import annotations

import logging

import pytest

from data_helpers import coco_dataset_files, make_image, write_json
from glip.data import CocoDetectionDataset, DataError
from glip.data.coco_json import read_coco
from glip.data.validation import RecordErrors
from glip.evaluation import EvaluationError, load_detection_dataset


def _lvis_file(tmp_path):
    """Two LVIS-style images (``coco_url``, federated fields), three categories with frequencies."""
    for name in ("val2017/000000000001.jpg", "val2017/000000000002.jpg"):
        make_image(tmp_path / name)
    data = {
        "images": [
            {"id": 1, "coco_url": "http://images.cocodataset.org/val2017/000000000001.jpg", "width": 64,
             "height": 48, "neg_category_ids": [3], "not_exhaustive_category_ids": []},
            {"id": 2, "coco_url": "http://images.cocodataset.org/val2017/000000000002.jpg", "width": 64,
             "height": 48, "neg_category_ids": [], "not_exhaustive_category_ids": [2]},
        ],
        "categories": [{"id": 1, "name": "bow_(weapon)", "frequency": "r"},
                       {"id": 2, "name": "traffic_light", "frequency": "c"},
                       {"id": 3, "name": "cat", "frequency": "f"}],
        "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 3, 20, 10]},
                        {"id": 11, "image_id": 2, "category_id": 2, "bbox": [0, 0, 64, 48], "iscrowd": True},
                        {"id": 12, "image_id": 2, "category_id": 2, "bbox": [5, 5, 10, 10], "area": 7.5}],
    }
    return write_json(tmp_path / "lvis.json", data), data


def test_training_and_evaluation_read_the_same_records(tmp_path):
    path, _ = _lvis_file(tmp_path)
    training = CocoDetectionDataset(path, tmp_path, on_error="raise")
    evaluation = load_detection_dataset(path, tmp_path)
    assert training.category_names == [c.prompt.phrase for c in evaluation.categories] == ["bow", "traffic light", "cat"]
    assert [str(image.path.relative_to(tmp_path)) for image in training.images] == [
        str(evaluation.image_path(image).relative_to(tmp_path)) for image in evaluation.images]
    assert [c.frequency for c in evaluation.categories] == ["r", "c", "f"]
    assert evaluation.negative_category_ids == {1: frozenset({3}), 2: frozenset()}
    assert evaluation.not_exhaustive_category_ids == {1: frozenset(), 2: frozenset({2})}
    # Crowd boxes: kept (as iscrowd=1) for pycocotools, ignored by training; area filled or kept.
    assert [(a["iscrowd"], a["area"]) for a in evaluation.annotations] == [(0, 200.0), (1, 3072.0), (0, 7.5)]
    assert [a["id"] for a in evaluation.annotations] == [1, 2, 3]
    assert training.get_sample(1).num_boxes == 1


FAULTS = {
    "iscrowd": ({"iscrowd": 2}, "iscrowd that is not 0 or 1"),
    "bbox": ({"bbox": [1, 2, -3, 4]}, "bbox that is not [x, y, w, h] with w, h >= 0"),
    "category": ({"category_id": 99}, "unknown category id"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_faulty_annotation_drops_its_image_in_training_and_stops_evaluation(tmp_path, caplog, fault):
    path, data = _lvis_file(tmp_path)
    change, kind = FAULTS[fault]
    data["annotations"][0].update(change)
    write_json(path, data)
    with caplog.at_level(logging.WARNING, logger="glip.data"):
        training = CocoDetectionDataset(path, tmp_path)
    assert [image.image_id for image in training.images] == [2]
    assert "lvis.json#annotation 10 (image 1)" in caplog.text
    with pytest.raises(DataError, match=r"lvis.json#annotation 10 \(image 1\)"):
        CocoDetectionDataset(path, tmp_path, on_error="raise")
    with pytest.raises(EvaluationError, match=f"lvis.json: 1 record with an? {kind.replace('[', '.').replace(']', '.')}"):
        load_detection_dataset(path, tmp_path)


def test_evaluation_counts_every_fault_of_the_file(tmp_path):
    path, data = _lvis_file(tmp_path)
    data["annotations"] += [{"id": 20, "image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 2]},
                            {"id": 21, "image_id": 1, "category_id": 8, "bbox": [1, 1, 2, 2]},
                            {"id": 22, "image_id": "1", "category_id": 1, "bbox": [1, 1, 2, 2]}]
    data["images"][1]["width"] = 0
    write_json(path, data)
    with pytest.raises(EvaluationError) as error:
        load_detection_dataset(path, tmp_path)
    message = str(error.value)
    assert "2 records with an unknown category id (7, 8) - the category is not in 'categories'" in message
    assert "1 record with an unknown image id ('1') - ids are compared with their type: '1' is not 1" in message
    assert "1 record with a bad image size (2)" in message
    # Training skips both images: image 1 for its annotations, image 2 for its size.
    with pytest.raises(DataError, match="all 2 records were skipped"):
        CocoDetectionDataset(path, tmp_path)


def test_faults_of_the_whole_file_are_raised_under_any_policy(tmp_path):
    path, data = _lvis_file(tmp_path)
    for image in data["images"]:
        del image["neg_category_ids"]
    write_json(path, data)
    for read in (lambda: CocoDetectionDataset(path, tmp_path), lambda: load_detection_dataset(path, tmp_path)):
        with pytest.raises(DataError, match="'not_exhaustive_category_ids' but none has 'neg_category_ids'"):
            read()
    data = {"images": [{"id": 1, "file_name": "a.png"}, {"id": "b", "file_name": "b.png"}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}
    with pytest.raises(DataError, match="mix.json: image ids mix integers and strings"):
        read_coco(data, RecordErrors("skip", "mix.json"))


def test_a_faulty_category_is_never_skipped(tmp_path):
    annotation_file, image_dir = coco_dataset_files(
        tmp_path, ["cat", "(nothing)"], [{"id": 1, "file_name": "a.png"}],
        [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DataError, match=r"instances.json: 1 record with a name that is empty once cleaned "
                                        r"\('\(nothing\)'\) - parentheses and underscores are removed"):
        CocoDetectionDataset(annotation_file, image_dir, on_error="skip")
    with pytest.raises(EvaluationError, match="name that is empty once cleaned"):
        load_detection_dataset(annotation_file, image_dir)


def test_annotations_of_a_rejected_image_are_not_reported_again(tmp_path):
    data = {"images": [{"id": 1, "file_name": "a.png", "width": -4, "height": 48}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
            "categories": [{"id": 1, "name": "a"}]}
    errors = RecordErrors("skip", "one.json")
    coco = read_coco(data, errors)
    assert coco.images == [] and coco.annotations == [] and coco.num_image_records == 1
    assert errors.messages == ["one.json#image 1: image size -4x48 is not two positive integers"]
