"""Instance masks in the data pipeline: decoding, the training transforms, the collate, bad records."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from PIL import Image

from data_helpers import coco_dataset_files, make_image, write_lines
from glip.data import CocoDetectionDataset, DataError, GroundingCollator, GroundingJsonlDataset
from glip.data.masks import check_segmentation, decode_segmentation, mask_to_rle, rle_to_mask
from glip.data.sample import GroundingSample
from glip.data.transforms import Compose, Normalize, RandomHorizontalFlip, RandomResize

RECTANGLE = [[8, 6, 28, 6, 28, 18, 8, 18]]  # polygon of the box [8, 6, 20, 12] (x, y, w, h)


def _mask_box(mask: np.ndarray) -> list[int]:
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


def test_polygon_decodes_to_the_pixels_inside_it():
    mask = decode_segmentation([[2, 1, 6, 1, 6, 4, 2, 4]], height=6, width=8)
    expected = np.zeros((6, 8), dtype=bool)
    expected[1:4, 2:6] = True  # continuous corners: pixels 2..5 by 1..3
    assert (mask == expected).all()
    two = decode_segmentation([[0, 0, 2, 0, 2, 2, 0, 2], [5, 3, 7, 3, 7, 5, 5, 5]], height=6, width=8)
    assert two.sum() == 8 and two[0, 0] and two[4, 6] and not two[2, 3]


def test_rle_in_both_count_forms_decodes_column_major():
    # 3 rows x 4 columns, runs: 1 background, 2 object, 3 background, 6 object (column by column).
    flat = np.array([0] + [1] * 2 + [0] * 3 + [1] * 6, dtype=bool)
    expected = flat.reshape(4, 3).T  # [H, W]
    uncompressed = {"size": [3, 4], "counts": [1, 2, 3, 6]}
    assert (rle_to_mask(uncompressed) == expected).all()
    compressed = mask_to_rle(expected)
    assert isinstance(compressed["counts"], str) and compressed["size"] == [3, 4]
    assert (rle_to_mask(compressed) == expected).all()
    assert (decode_segmentation(compressed, 3, 4) == decode_segmentation(uncompressed, 3, 4)).all()


@pytest.mark.parametrize("segmentation, message", [
    ({"size": [3, 4], "counts": [1, 2, 3]}, "cover 6 pixels, not height * width = 12"),
    ({"size": [3, 4], "counts": "\x7f"}, "has the character"),
    ({"size": [3, 4], "counts": "P"}, "ends in the middle"),
    ({"size": [5, 4], "counts": [20]}, "not the image's [height, width] [3, 4]"),
    ({"counts": [12]}, "'size' None"),
    ([[1, 2, 3]], "give (x, y) pairs"),
    ([["a", 1, 2, 3, 4, 5]], "not a non-empty list of finite numbers"),
    ("polygon", "segmentation of type str"),
])
def test_check_segmentation_names_the_fault(segmentation, message):
    with pytest.raises(DataError) as raised:
        check_segmentation(segmentation, width=4, height=3)
    assert message in str(raised.value) and raised.value.kind == "bad segmentation"


def _coco(tmp_path, segmentations):
    """One 64x48 image with a box per segmentation (None: no ``segmentation`` key)."""
    annotations = []
    for index, segmentation in enumerate(segmentations):
        annotation = {"image_id": 1, "category_id": 1 + index % 2, "bbox": [8, 6, 20, 12]}
        if segmentation is not None:
            annotation["segmentation"] = segmentation
        annotations.append(annotation)
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}]
    return coco_dataset_files(tmp_path, ["star", "ring"], images, annotations)


def _rle_of_rectangle() -> dict:
    mask = np.zeros((48, 64), dtype=bool)
    mask[6:18, 8:28] = True
    return mask_to_rle(mask)


def test_masks_follow_resize_and_flip_through_the_collate(tmp_path):
    uncompressed = {"size": [48, 64], "counts": [int(v) for v in _uncompressed_counts(_rle_of_rectangle())]}
    annotation_file, image_dir = _coco(tmp_path, [RECTANGLE, _rle_of_rectangle(), uncompressed])
    transform = Compose([RandomResize([96], None), RandomHorizontalFlip(1.0), Normalize()])  # x2, mirrored
    dataset = CocoDetectionDataset(annotation_file, image_dir, transform=transform, max_prompt_tokens=None)
    assert isinstance(dataset.images[0].segmentations[0], list)  # kept as in the file until read
    example = dataset[0]
    masks = example.sample.masks
    assert masks.dtype == np.uint8 and masks.shape == (3, 96, 128) == (3, *example.image.shape[-2:])
    for box, mask in zip(example.sample.boxes, masks):
        assert box.tolist() == [128 - 56, 12, 128 - 16, 36]
        assert _mask_box(mask) == box.tolist()  # the mask's box is the transformed box
    batch = GroundingCollator()([example])
    target = batch.targets[0]
    assert target["masks"].dtype == torch.uint8 and tuple(target["masks"].shape) == (3, 96, 128)
    assert batch.image_sizes[0] == (96, 128) and batch.images.shape[-2:] == (96, 128)
    assert torch.equal(target["masks"], torch.from_numpy(masks))


def _uncompressed_counts(rle: dict) -> list[int]:
    flat = rle_to_mask(rle).T.ravel()  # column-major
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    return ([0] + runs) if flat[0] else runs


def test_downscaled_mask_keeps_its_box():
    rng = random.Random(0)
    mask = np.zeros((1, 48, 64), dtype=np.uint8)
    mask[0, 7:31, 10:50] = 1
    sample = GroundingSample(image_path=None, caption="a star", phrase_spans=[[(2, 6)]],
                             boxes=np.array([[10, 7, 50, 31]], dtype=np.float32), box_phrases=[0],
                             image_id=1, source="test", width=64, height=48, masks=mask)
    image, resized = RandomResize([24], None)(Image.new("RGB", (64, 48)), sample, rng)  # x0.5
    assert resized.masks.shape == (1, 24, 32)
    assert resized.boxes[0].tolist() == [5, 3.5, 25, 15.5]
    assert _mask_box(resized.masks[0])[0::2] == [5, 25]  # rows 3 and 15 are half covered: kept
    assert np.abs(np.array(_mask_box(resized.masks[0])) - resized.boxes[0]).max() <= 0.5


def test_a_box_without_mask_means_no_masks_key(tmp_path):
    annotation_file, image_dir = _coco(tmp_path, [RECTANGLE, None])
    dataset = CocoDetectionDataset(annotation_file, image_dir, max_prompt_tokens=None)
    example = dataset[0]
    assert example.sample.masks is None
    assert "masks" not in GroundingCollator()([example]).targets[0]
    (tmp_path / "b").mkdir()
    plain_file, plain_dir = _coco(tmp_path / "b", [None, None])
    plain = CocoDetectionDataset(plain_file, plain_dir, max_prompt_tokens=None)
    assert "masks" not in GroundingCollator()([plain[0]]).targets[0]


def test_bad_segmentation_takes_the_record_error_path(tmp_path, caplog):
    annotation_file, image_dir = _coco(tmp_path, [RECTANGLE, {"size": [48, 64], "counts": [5, 7]}])
    with pytest.raises(DataError) as raised:
        CocoDetectionDataset(annotation_file, image_dir, on_error="raise", max_prompt_tokens=None)
    message = str(raised.value)
    assert "\n" not in message and "instances.json#annotation 2 (image 1)" in message
    assert "RLE runs cover 12 pixels, not height * width = 3072" in message
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
              {"id": 2, "file_name": "b.png", "width": 64, "height": 48}]
    annotations = [{"image_id": 1, "category_id": 1, "bbox": [8, 6, 20, 12], "segmentation": [[1, 2, 3]]},
                   {"image_id": 2, "category_id": 1, "bbox": [8, 6, 20, 12], "segmentation": RECTANGLE}]
    (tmp_path / "c").mkdir()
    annotation_file, image_dir = coco_dataset_files(tmp_path / "c", ["star"], images, annotations)
    with caplog.at_level(logging.WARNING):
        dataset = CocoDetectionDataset(annotation_file, image_dir, on_error="skip", max_prompt_tokens=None)
    assert [image.image_id for image in dataset.images] == [2]
    assert any("give (x, y) pairs" in record.getMessage() for record in caplog.records)


def _odvg_line(regions: list[dict], **extra) -> dict:
    return {"filename": "a.png", "height": 48, "width": 64, **extra,
            "grounding": {"caption": "a star and two rings", "regions": regions}}


def test_odvg_regions_carry_masks_and_bad_ones_name_the_line(tmp_path):
    make_image(tmp_path / "a.png")
    other = np.zeros((48, 64), dtype=bool)
    other[30:40, 40:60] = True
    star = {"bbox": [8, 6, 28, 18], "tokens_positive": [[2, 6]], "segmentation": RECTANGLE}
    rings = {"bbox": [[8, 6, 28, 18], [40, 30, 60, 40]], "tokens_positive": [[15, 20]],
             "segmentation": [_rle_of_rectangle(), mask_to_rle(other)]}
    no_mask = {"bbox": [40, 30, 60, 40], "tokens_positive": [[15, 20]]}
    bad = {"bbox": [8, 6, 28, 18], "tokens_positive": [[2, 6]], "segmentation": {"size": [48, 64], "counts": "zz"}}
    path = write_lines(tmp_path / "train.jsonl", [_odvg_line([star, rings]), _odvg_line([star, no_mask]),
                                                  _odvg_line([bad])])
    with pytest.raises(DataError) as raised:
        GroundingJsonlDataset(path, tmp_path, on_error="raise")
    assert "train.jsonl:3: segmentation: compressed RLE 'counts'" in str(raised.value)
    dataset = GroundingJsonlDataset(path, tmp_path, on_error="skip", transform=Compose([Normalize()]))
    assert len(dataset) == 2
    masks = dataset[0].sample.masks
    assert masks.shape == (3, 48, 64)
    assert [_mask_box(m) for m in masks] == [[8, 6, 28, 18], [8, 6, 28, 18], [40, 30, 60, 40]]
    assert dataset[1].sample.masks is None


def test_odvg_region_with_several_boxes_needs_one_segmentation_each(tmp_path):
    make_image(tmp_path / "a.png")
    rings = {"bbox": [[8, 6, 28, 18], [40, 30, 60, 40]], "tokens_positive": [[15, 20]], "segmentation": RECTANGLE}
    path = write_lines(tmp_path / "train.jsonl", [_odvg_line([rings])])
    with pytest.raises(DataError, match="train.jsonl:1: segmentation: a region with 2 boxes needs a list of 2"):
        GroundingJsonlDataset(path, tmp_path, on_error="raise")
