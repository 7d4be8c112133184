"""CocoDetectionDataset: prompt sampling (positives, negatives, cap, shuffle), boxes, faulty records."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from data_helpers import coco_dataset_files
from glip.data import CocoDetectionDataset, DataError, build_eval_transforms
from glip.prompts import SPECIAL_TOKENS, count_prompt_tokens
from glip.tokenizer import load_tokenizer


def _three_images(tmp_path, categories, extra_annotations=()):
    images = [
        {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
        {"id": 2, "file_name": "b.png", "width": 64, "height": 48},
        {"id": 3, "file_name": "c.png", "width": 64, "height": 48},
    ]
    annotations = [
        {"image_id": 1, "category_id": 1, "bbox": [2, 3, 20, 10]},
        {"image_id": 1, "category_id": 3, "bbox": [30, 5, 10, 30]},
        {"image_id": 1, "category_id": 3, "bbox": [40, 10, 20, 20]},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 64, 48]},
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 5, 5], "iscrowd": 1},
        *extra_annotations,
    ]
    return coco_dataset_files(tmp_path, categories, images, annotations)


@pytest.fixture
def many_categories(tmp_path):
    names = [f"thing_{i}" for i in range(300)]
    return _three_images(tmp_path, names)


def _check_sample(dataset, index, expected_categories):
    sample = dataset.get_sample(index)
    texts = sample.phrase_texts()
    image = dataset.images[index]
    # Every box's phrase reads its category name; every positive is in the prompt.
    names = [dataset.category_names[c] for c in image.categories.tolist()]
    assert [texts[p] for p in sample.box_phrases] == names
    assert set(expected_categories) <= set(texts)
    assert len(texts) == len(set(texts))  # no category twice
    for spans in sample.phrase_spans:
        for start, end in spans:
            assert sample.caption[start:end] in texts
    return sample


def test_prompt_positives_and_cap_with_300_categories(many_categories):
    annotation_file, image_dir = many_categories
    unlimited = CocoDetectionDataset(annotation_file, image_dir, max_prompt_categories=85, max_prompt_tokens=None)
    dataset = CocoDetectionDataset(annotation_file, image_dir, max_prompt_categories=85)
    assert len(dataset) == 3
    tokenizer = load_tokenizer()
    for index, positives in enumerate([["thing 0", "thing 2"], ["thing 1"], []]):
        assert len(_check_sample(unlimited, index, positives).phrase_spans) == 85
        # "thing 123." is 4 tokens: the 256-token window holds about 63 of them.
        sample = _check_sample(dataset, index, positives)
        assert 60 <= len(sample.phrase_spans) < 85
        assert len(tokenizer(sample.caption)["input_ids"]) <= 256
    # Crowd box of image 2 ignored; image 3 has no box but stays (trains as negatives).
    assert dataset.get_sample(1).num_boxes == 1
    assert dataset.get_sample(2).num_boxes == 0


def test_prompt_is_deterministic_per_seed_epoch_index(many_categories):
    annotation_file, image_dir = many_categories
    first = CocoDetectionDataset(annotation_file, image_dir, seed=7)
    again = CocoDetectionDataset(annotation_file, image_dir, seed=7)
    other_seed = CocoDetectionDataset(annotation_file, image_dir, seed=8)
    captions = [first.get_sample(i).caption for i in range(3)]
    assert captions == [again.get_sample(i).caption for i in range(3)]
    assert captions[0] != other_seed.get_sample(0).caption
    assert len(set(captions)) == 3  # indices draw independently
    first.set_epoch(1)
    assert first.get_sample(0).caption != captions[0]
    first.set_epoch(0)  # a resumed run sees the epoch's prompts again
    assert first.get_sample(0).caption == captions[0]
    # The positive categories move around the prompt between epochs (shuffled order).
    orders = set()
    for epoch in range(6):
        first.set_epoch(epoch)
        orders.add(tuple(first.sample_prompt_categories(0)[:5]))
    assert len(orders) > 1


def test_few_categories_all_in_prompt_and_cleaned(tmp_path):
    annotation_file, image_dir = _three_images(tmp_path, ["traffic_light", "bow_(weapon)", "cat"])
    dataset = CocoDetectionDataset(annotation_file, image_dir, max_prompt_categories=85)
    assert dataset.category_names == ["traffic light", "bow", "cat"]
    sample = _check_sample(dataset, 0, ["traffic light", "cat"])
    assert sorted(sample.phrase_texts()) == ["bow", "cat", "traffic light"]
    names = {1: "traffic light", 2: "bow", 3: "cat"}
    assert [names[c] for c in sample.phrase_category_ids] == sample.phrase_texts()
    assert sample.caption.endswith(".")
    np.testing.assert_allclose(sample.boxes[0], [2, 3, 22, 13])  # xywh -> xyxy


def test_positives_beyond_the_cap_are_all_kept(tmp_path):
    names = [f"kind_{i}" for i in range(10)]
    annotations = [{"image_id": 1, "category_id": c + 1, "bbox": [c, c, 10, 10]} for c in range(6)]
    annotation_file, image_dir = coco_dataset_files(
        tmp_path, names, [{"id": 1, "file_name": "a.png"}], annotations
    )
    dataset = CocoDetectionDataset(annotation_file, image_dir, max_prompt_categories=4)
    sample = _check_sample(dataset, 0, [f"kind {i}" for i in range(6)])
    assert len(sample.phrase_spans) == 6 and sample.num_boxes == 6


def test_prompt_fits_the_token_window(tmp_path):
    # 40 categories of 12 tokens each: 85 names would need ~500 tokens.
    names = [f"very long category name number {i} with many words" for i in range(40)]
    annotation_file, image_dir = _three_images(tmp_path, names)
    dataset = CocoDetectionDataset(annotation_file, image_dir, max_prompt_categories=85, max_prompt_tokens=64)
    tokenizer = load_tokenizer()
    for index in range(3):
        sample = dataset.get_sample(index)
        assert len(tokenizer(sample.caption)["input_ids"]) <= 64
    assert dataset.get_sample(0).num_boxes == 3  # both positives fit


def test_token_budget_counts_what_the_caption_costs(many_categories):
    annotation_file, image_dir = many_categories
    dataset = CocoDetectionDataset(annotation_file, image_dir, max_prompt_tokens=40)
    tokenizer = load_tokenizer()
    for index in range(3):
        categories = dataset.sample_prompt_categories(index)
        counted = SPECIAL_TOKENS + sum(dataset._token_costs[c] for c in categories)
        assert counted == count_prompt_tokens(dataset.get_sample(index).caption, tokenizer) <= 40
        cheapest_left = min(cost for c, cost in enumerate(dataset._token_costs) if c not in categories)
        assert counted + cheapest_left > 40  # negatives were added while they fit (names cost alike here)


def test_skip_empty_and_getitem(tmp_path):
    annotation_file, image_dir = _three_images(tmp_path, ["a", "b", "c"])
    dataset = CocoDetectionDataset(annotation_file, image_dir, skip_empty=True,
                                   transform=build_eval_transforms(min_size=96, max_size=200))
    assert len(dataset) == 2
    example = dataset[0]
    assert example.image.shape == (3, 96, 128)
    assert example.original_size == (48, 64)
    assert example.image.dtype == torch.float32
    sample = example.sample
    order = np.argsort(sample.boxes[:, 0])
    np.testing.assert_allclose(sample.boxes[order[0]], np.array([2, 3, 22, 13]) * 2)
    assert (sample.width, sample.height) == (128, 96)


def test_image_size_read_from_header_when_missing(tmp_path):
    annotation_file, image_dir = coco_dataset_files(
        tmp_path, ["a"], [{"id": 1, "file_name": "a.png"}], [{"image_id": 1, "category_id": 1, "bbox": [60, 0, 4, 4]}]
    )
    dataset = CocoDetectionDataset(annotation_file, image_dir)
    assert (dataset.images[0].width, dataset.images[0].height) == (64, 48)


FAULTS = {
    "box outside": ({"image_id": 1, "category_id": 1, "bbox": [50, 5, 30, 10], "id": 77}, "annotation 77", "outside"),
    "unknown category": (
        {"image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5], "id": 78}, "annotation 78", "unknown category"),
    "empty box": ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 5], "id": 79}, "annotation 79", "empty"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faulty_annotation_skips_the_image_or_raises(tmp_path, caplog, fault):
    annotation, where, words = FAULTS[fault]
    annotation_file, image_dir = _three_images(tmp_path, ["a", "b", "c"], [annotation])
    with caplog.at_level(logging.WARNING, logger="glip.data"):
        dataset = CocoDetectionDataset(annotation_file, image_dir, on_error="skip")
    assert [image.image_id for image in dataset.images] == [2, 3]  # image 1 dropped whole
    assert f"instances.json#{where} (image 1)" in caplog.text and words in caplog.text
    assert "skipped 1 faulty record" in caplog.text
    with pytest.raises(DataError, match=f"instances.json#{where}.*{words}"):
        CocoDetectionDataset(annotation_file, image_dir, on_error="raise")


def test_missing_image_and_orphan_annotation(tmp_path, caplog):
    images = [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
              {"id": 2, "file_name": "gone.png", "width": 64, "height": 48, "absent": True}]
    annotations = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                   {"image_id": 5, "category_id": 1, "bbox": [1, 1, 5, 5], "id": 40}]
    annotation_file, image_dir = coco_dataset_files(tmp_path, ["a"], images, annotations)
    with caplog.at_level(logging.WARNING, logger="glip.data"):
        dataset = CocoDetectionDataset(annotation_file, image_dir)
    assert len(dataset) == 1
    assert "instances.json#image 2" in caplog.text and "gone.png" in caplog.text
    assert "instances.json#annotation 40" in caplog.text and "unknown image id 5" in caplog.text
    assert len(dataset.errors.messages) == 2
    with pytest.raises(DataError, match="annotation 40: refers to unknown image id 5"):
        CocoDetectionDataset(annotation_file, image_dir, on_error="raise")
    annotation_file, image_dir = coco_dataset_files(tmp_path, ["a"], images, annotations[:1])
    with pytest.raises(DataError, match="instances.json#image 2: image file .*gone.png' does not exist"):
        CocoDetectionDataset(annotation_file, image_dir, on_error="raise")


def test_box_within_tolerance_is_clipped(tmp_path):
    annotation_file, image_dir = coco_dataset_files(
        tmp_path, ["a"], [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        [{"image_id": 1, "category_id": 1, "bbox": [-0.5, 40, 64.8, 8.9]}],
    )
    dataset = CocoDetectionDataset(annotation_file, image_dir, on_error="raise")
    np.testing.assert_allclose(dataset.images[0].boxes[0], [0, 40, 64, 48])


def test_all_faulty_is_an_error(tmp_path):
    annotation_file, image_dir = coco_dataset_files(
        tmp_path, ["a"], [{"id": 1, "file_name": "a.png", "absent": True}], []
    )
    with pytest.raises(DataError, match="all 1 records were skipped"):
        CocoDetectionDataset(annotation_file, image_dir)
