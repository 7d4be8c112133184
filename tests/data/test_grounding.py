"""ODVG JSON Lines and MDETR COCO JSON grounding data: parsing, phrase grouping, faulty records."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from data_helpers import make_image, write_json, write_lines
from glip.data import DataError, GroundingJsonlDataset, MdetrCocoDataset, build_eval_transforms

CAPTION = "a red star and two blue rings next to a red star"


def _odvg(filename="a.png", **overrides):
    record = {
        "filename": filename, "height": 48, "width": 64,
        "grounding": {
            "caption": CAPTION,
            "regions": [
                # "red star" mentioned twice: one phrase with two spans, one box.
                {"bbox": [1, 2, 20, 30], "phrase": "red star", "tokens_positive": [[2, 10], [40, 48]]},
                # Two boxes of "blue rings", as two regions with the same spans.
                {"bbox": [30, 5, 40, 15], "phrase": "blue rings", "tokens_positive": [[19, 29]]},
                {"bbox": [42, 5, 60, 15], "phrase": "blue rings", "tokens_positive": [[19, 29]]},
            ],
        },
    }
    record.update(overrides)
    return record


@pytest.fixture
def image_dir(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        make_image(tmp_path / "images" / name)
    return tmp_path / "images"


def test_odvg_multi_span_and_multi_box_phrases(tmp_path, image_dir):
    path = write_lines(tmp_path / "train.jsonl", [_odvg()])
    dataset = GroundingJsonlDataset(path, image_dir)
    sample = dataset.get_sample(0)
    assert sample.caption == CAPTION
    assert sample.phrase_spans == [[(2, 10), (40, 48)], [(19, 29)]]
    assert sample.phrase_texts() == ["red star red star", "blue rings"]
    assert sample.box_phrases == [0, 1, 1]
    np.testing.assert_allclose(sample.boxes, [[1, 2, 20, 30], [30, 5, 40, 15], [42, 5, 60, 15]])
    assert sample.source == f"{path}:1"
    assert sample.image_id == "a.png"


def test_odvg_phrase_without_spans_and_box_lists(tmp_path, image_dir):
    record = {"filename": "b.png", "grounding": {"caption": "A Dog on a mat", "regions": [
        {"bbox": [[1, 1, 10, 10], [20, 1, 30, 10]], "phrase": "dog"}]}}
    path = write_lines(tmp_path / "train.jsonl", [record])
    sample = GroundingJsonlDataset(path, image_dir).get_sample(0)
    assert sample.phrase_spans == [[(2, 5)]] and sample.box_phrases == [0, 0]
    assert (sample.width, sample.height) == (64, 48)  # read from the image header


def test_simple_phrases_variant(tmp_path, image_dir):
    record = {"filename": "c.png", "caption": "left cup, right cup", "phrases": [
        {"spans": [[0, 8]], "boxes": [[1, 1, 10, 10]]},
        {"spans": [[10, 19]], "boxes": [[20, 1, 30, 10], [40, 1, 50, 10]]},
        {"spans": [[5, 8]], "boxes": []}]}
    path = write_lines(tmp_path / "train.jsonl", [record])
    sample = GroundingJsonlDataset(path, image_dir).get_sample(0)
    assert sample.phrase_texts() == ["left cup", "right cup", "cup"]
    assert sample.box_phrases == [0, 1, 1]


BAD_LINES = {
    "span outside the caption": (
        lambda r: r["grounding"]["regions"][1].update(tokens_positive=[[19, 99]]), "ends beyond the caption"),
    "box outside the image": (
        lambda r: r["grounding"]["regions"][0].update(bbox=[1, 2, 90, 30]), "outside the 64x48 image"),
    "missing image": (lambda r: r.update(filename="nothere.png"), "nothere.png' does not exist"),
    "empty span": (lambda r: r["grounding"]["regions"][0].update(tokens_positive=[[5, 5]]), "is empty"),
}


@pytest.mark.parametrize("fault", sorted(BAD_LINES))
def test_faulty_line_is_reported_with_file_and_line(tmp_path, image_dir, caplog, fault):
    spoil, words = BAD_LINES[fault]
    bad = _odvg()
    spoil(bad)
    path = write_lines(tmp_path / "train.jsonl", [_odvg(), "", bad, _odvg("b.png")])
    with caplog.at_level(logging.WARNING, logger="glip.data"):
        dataset = GroundingJsonlDataset(path, image_dir, on_error="skip")
    assert len(dataset) == 2
    assert [s.source for s in dataset.samples] == [f"{path}:1", f"{path}:4"]
    assert f"train.jsonl:3: " in caplog.text and words in caplog.text
    assert f"1 {fault}" in caplog.text  # the summary counts by kind
    with pytest.raises(DataError, match=f"train.jsonl:3: .*{words}"):
        GroundingJsonlDataset(path, image_dir, on_error="raise")


def test_invalid_json_line(tmp_path, image_dir):
    path = write_lines(tmp_path / "train.jsonl", [_odvg(), "{not json", {"detection": {}, "filename": "a.png"}])
    dataset = GroundingJsonlDataset(path, image_dir)
    assert len(dataset) == 1 and len(dataset.errors.messages) == 2
    assert "train.jsonl:2: invalid JSON" in dataset.errors.messages[0]
    assert "train.jsonl:3: ODVG detection records" in dataset.errors.messages[1]


def test_mdetr_coco_json(tmp_path, image_dir):
    data = {
        "images": [
            {"id": 7, "file_name": "a.png", "height": 48, "width": 64, "caption": CAPTION},
            {"id": 8, "file_name": "b.png", "height": 48, "width": 64, "caption": "nothing here"},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [1, 2, 19, 28], "tokens_positive": [[2, 10], [40, 48]], "category_id": 1},
            {"id": 2, "image_id": 7, "bbox": [30, 5, 10, 10], "tokens_positive": [[19, 29]], "category_id": 1},
            {"id": 3, "image_id": 7, "bbox": [42, 5, 18, 10], "tokens_positive": [[19, 29]], "category_id": 1},
            {"id": 4, "image_id": 7, "bbox": [0, 0, 5, 5], "tokens_positive": [[0, 1]], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "object"}],
    }
    path = write_json(tmp_path / "mdetr.json", data)
    dataset = MdetrCocoDataset(path, image_dir, transform=build_eval_transforms(min_size=96))
    assert len(dataset) == 2
    sample = dataset.get_sample(0)
    assert sample.phrase_spans == [[(2, 10), (40, 48)], [(19, 29)]]
    assert sample.box_phrases == [0, 1, 1]
    np.testing.assert_allclose(sample.boxes, [[1, 2, 20, 30], [30, 5, 40, 15], [42, 5, 60, 15]])
    assert sample.source == f"{path}#image 7" and sample.image_id == 7
    assert dataset.get_sample(1).num_boxes == 0
    example = dataset[0]
    np.testing.assert_allclose(example.sample.boxes[0], [2, 4, 40, 60])
    assert len(MdetrCocoDataset(path, image_dir, skip_empty=True)) == 1

    data["annotations"][1]["tokens_positive"] = [[19, 80]]
    path = write_json(tmp_path / "mdetr.json", data)
    dataset = MdetrCocoDataset(path, image_dir)
    assert len(dataset) == 1
    assert "mdetr.json#annotation 2 (image 7): span (19, 80) ends beyond" in dataset.errors.messages[0]
    with pytest.raises(DataError, match="mdetr.json#annotation 2 \\(image 7\\): span"):
        MdetrCocoDataset(path, image_dir, on_error="raise")
