"""Ground-truth masks that cannot be of their object are record faults naming the file and record:
an empty mask, a polygon outside the image, a mask beyond its box, a polygon of fewer than three
points. Under on_error="skip" the image is dropped with a warning, never trained on with the mask."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from data_helpers import coco_dataset_files, make_image, write_lines
from glip.data import CocoDetectionDataset, DataError, GroundingJsonlDataset
from glip.data.masks import mask_to_rle, read_segmentation

BOX = [8, 6, 20, 12]  # x, y, w, h in a 64x48 image
RECTANGLE = [[8, 6, 28, 6, 28, 18, 8, 18]]  # the box's outline


def _rle(rows: slice, cols: slice, size: tuple[int, int] = (48, 64)) -> dict:
    mask = np.zeros(size, dtype=bool)
    mask[rows, cols] = True
    return mask_to_rle(mask)


BAD_MASKS = {
    "empty RLE": ({"size": [48, 64], "counts": [48 * 64]}, "the mask is empty"),
    "empty compressed RLE": (mask_to_rle(np.zeros((48, 64), dtype=bool)), "the mask is empty"),
    "collinear polygon": ([[8, 6, 18, 12, 28, 18]], "the mask is empty"),
    "polygon outside the image": ([[60, 40, 90, 40, 90, 60, 60, 60]], "lies outside the 64x48 image"),
    "mask of another place": (_rle(slice(30, 40), slice(40, 60)), "beyond its box [8, 6, 28, 18]"),
    "polygon beyond its box": ([[8, 6, 40, 6, 40, 30, 8, 30]], "beyond its box"),
    "two-point polygon": ([[8, 6, 28, 18]], "has 2 points: a polygon needs at least 3"),
    "one good and one short polygon": (RECTANGLE + [[1, 1, 2, 2]], "has 2 points"),
}


def _coco(tmp_path, segmentation) -> tuple:
    """Image 1 with a good mask, image 2 with ``segmentation`` on its second box (annotation 3)."""
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
              {"id": 2, "file_name": "b.png", "width": 64, "height": 48}]
    annotations = [{"image_id": 1, "category_id": 1, "bbox": BOX, "segmentation": RECTANGLE},
                   {"image_id": 2, "category_id": 1, "bbox": BOX, "segmentation": RECTANGLE},
                   {"image_id": 2, "category_id": 1, "bbox": BOX, "segmentation": segmentation}]
    return coco_dataset_files(tmp_path, ["star"], images, annotations)


@pytest.mark.parametrize("case", list(BAD_MASKS))
def test_bad_mask_is_an_error_naming_the_record(case, tmp_path):
    segmentation, fault = BAD_MASKS[case]
    annotation_file, image_dir = _coco(tmp_path, segmentation)
    with pytest.raises(DataError) as raised:
        CocoDetectionDataset(annotation_file, image_dir, on_error="raise", max_prompt_tokens=None)
    message = str(raised.value)
    assert "\n" not in message and fault in message
    assert "instances.json#annotation 3 (image 2): segmentation: " in message


def test_skipping_drops_the_whole_image_with_a_warning(tmp_path, caplog):
    annotation_file, image_dir = _coco(tmp_path, BAD_MASKS["mask of another place"][0])
    with caplog.at_level(logging.WARNING):
        dataset = CocoDetectionDataset(annotation_file, image_dir, on_error="skip", max_prompt_tokens=None)
    assert [image.image_id for image in dataset.images] == [1]  # not image 2 without its faulty mask
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "#annotation 3 (image 2)" in warnings and "1 mask outside its box" in warnings


def test_masks_of_their_object_are_accepted():
    occluded = _rle(slice(6, 12), slice(8, 18))  # only the visible part of the object: inside its box
    whole = _rle(slice(6, 18), slice(8, 28))  # pixels 8..27 by 6..17: the box exactly
    off_by_one = [[7.2, 5.4, 28.6, 5.4, 28.6, 18.7, 7.2, 18.7]]  # an outline a pixel wider than the box
    for segmentation in (occluded, whole, off_by_one, RECTANGLE):
        assert read_segmentation({"segmentation": segmentation}, 64, 48, box=(8, 6, 28, 18)) is segmentation
    assert read_segmentation({"segmentation": []}, 64, 48, box=(8, 6, 28, 18)) is None  # box-only files


def test_evaluation_ground_truth_counts_every_bad_mask():
    from glip.evaluation import EvaluationError, detection_dataset_from_coco

    data = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "star"}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": BOX,
                             "segmentation": BAD_MASKS["empty RLE"][0]},
                            {"id": 6, "image_id": 1, "category_id": 1, "bbox": BOX,
                             "segmentation": BAD_MASKS["two-point polygon"][0]}]}
    with pytest.raises(EvaluationError) as raised:
        detection_dataset_from_coco(data, source="gt.json")
    message = str(raised.value)
    assert "\n" not in message and "1 record with an empty mask" in message and "1 record with a bad segmentation" \
        in message


def test_odvg_mask_beyond_its_box_names_the_line(tmp_path):
    make_image(tmp_path / "a.png")
    good = {"bbox": [8, 6, 28, 18], "tokens_positive": [[2, 6]], "segmentation": RECTANGLE}
    swapped = {"bbox": [[8, 6, 28, 18], [40, 30, 60, 40]], "tokens_positive": [[15, 20]],
               "segmentation": [_rle(slice(30, 40), slice(40, 60)), _rle(slice(6, 18), slice(8, 28))]}
    lines = [{"filename": "a.png", "height": 48, "width": 64,
              "grounding": {"caption": "a star and two rings", "regions": regions}} for regions in ([good], [swapped])]
    path = write_lines(tmp_path / "train.jsonl", lines)
    with pytest.raises(DataError) as raised:
        GroundingJsonlDataset(path, tmp_path, on_error="raise")
    message = str(raised.value)
    assert "train.jsonl:2: segmentation: the mask spans [40, 30, 60, 40], beyond its box [8, 6, 28, 18]" in message
    assert len(GroundingJsonlDataset(path, tmp_path, on_error="skip")) == 1
