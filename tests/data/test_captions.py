"""Caption data: COCO captions JSON and its JSON Lines form; faulty records named, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glip.data.captions import CaptionRecord, read_captions
from glip.data.validation import DataError


def coco_captions(tmp_path: Path, annotations: list[dict]) -> Path:
    path = tmp_path / "captions.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
                                "annotations": annotations}))
    return path


def test_coco_captions(tmp_path):
    path = coco_captions(tmp_path, [{"image_id": 1, "id": 1, "caption": "a red star"},
                                    {"image_id": 2, "id": 2, "caption": "a ring"},
                                    {"image_id": 1, "id": 3, "caption": "one star"}])
    assert read_captions(path, image_dir=tmp_path / "img") == [
        CaptionRecord(1, tmp_path / "img" / "a.jpg", ("a red star", "one star")),
        CaptionRecord(2, tmp_path / "img" / "b.jpg", ("a ring",))]
    assert read_captions(path)[0].image == tmp_path / "a.jpg"  # default: the file's folder


def test_coco_caption_faults(tmp_path):
    path = coco_captions(tmp_path, [{"image_id": 1, "id": 1, "caption": "a red star"},
                                    {"image_id": 9, "id": 2, "caption": "a ring"},
                                    {"image_id": 2, "id": 3, "caption": ""}])
    with pytest.raises(DataError, match=r"captions.json#annotation 1: image_id 9 is not an image of the file$"):
        read_captions(path)
    records = read_captions(path, on_error="skip")
    assert [record.captions for record in records] == [("a red star",), ()]
    with pytest.raises(DataError, match="1 record with an unknown image id .*; 1 record with a bad caption"):
        read_captions(path, on_error="raise_all")
    (tmp_path / "other.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="other.json: not a COCO captions file"):
        read_captions(tmp_path / "other.json")


def test_jsonl_captions(tmp_path):
    path = tmp_path / "captions.jsonl"
    lines = [{"image": "images/1.png", "captions": ["a star", "one star"], "image_id": 1},
             {"image": "images/2.png", "captions": []},
             {"image": "images/3.png", "captions": ["a ring"]}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with pytest.raises(DataError, match=r"captions.jsonl:2: 'captions' is not a non-empty list of strings$"):
        read_captions(path)
    assert read_captions(path, on_error="skip") == [
        CaptionRecord(1, tmp_path / "images/1.png", ("a star", "one star")),
        CaptionRecord("images/3.png", tmp_path / "images/3.png", ("a ring",))]
    path.write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[0]) + "\n")
    with pytest.raises(DataError, match=r"captions.jsonl:2: image_id 1 is not unique"):
        read_captions(path)
    with pytest.raises(DataError, match="does not exist"):
        read_captions(tmp_path / "missing.jsonl")
