"""Phrase-grounding recall on a hand-built case with a known answer, in both input formats."""

from __future__ import annotations

import json

import pytest

from glip.evaluation import EvaluationError, evaluate_grounding, load_grounding_dataset

CAPTION = "a man and two dogs on a bench"
MAN, DOGS, BENCH = [0, 5], [10, 18], [22, 29]
GROUND_TRUTH = [  # (record id, caption, size, [(span, box xyxy)])
    (1, CAPTION, (200, 100), [(MAN, [10, 10, 50, 90]), (DOGS, [60, 50, 90, 90]), (DOGS, [120, 50, 150, 90]),
                              (BENCH, [0, 60, 200, 100])]),
    (2, "a red ball", (40, 40), [([0, 10], [5, 5, 25, 25])]),
]


def prediction(record, phrase, xyxy, score):
    x1, y1, x2, y2 = xyxy
    return {"image_id": record, "phrase_index": phrase, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


PREDICTIONS = (
    [prediction(1, 0, [10, 10, 50, 90], 0.9)]  # the man: right at rank 1
    # the dogs: the box around both dogs first (a hit only for "merged boxes"), then one dog
    + [prediction(1, 1, [60, 50, 150, 90], 0.8), prediction(1, 1, [60, 50, 90, 90], 0.7)]
    # the bench: six wrong boxes, then the right one at rank 7
    + [prediction(1, 2, [0, 0, 10, 10], 0.6 - i / 100) for i in range(6)] + [prediction(1, 2, [0, 60, 200, 99], 0.1)]
    # the red ball (record 2): no prediction at all
)
EXPECTED = {
    "any_box": {"R@1": 1 / 4, "R@5": 2 / 4, "R@10": 3 / 4, "upper_bound": 3 / 4},
    "merged_boxes": {"R@1": 2 / 4, "R@5": 2 / 4, "R@10": 3 / 4, "upper_bound": 3 / 4},
}


def write_jsonl(folder):
    lines = []
    for record_id, caption, (w, h), regions in GROUND_TRUTH:
        lines.append(json.dumps({
            "filename": f"{record_id}.jpg", "image_id": record_id, "width": w, "height": h,
            "grounding": {"caption": caption, "regions": [
                {"bbox": box, "phrase": caption[span[0]:span[1]], "tokens_positive": [span]} for span, box in regions]},
        }))
    path = folder / "flickr.odvg.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_mdetr(folder):
    images, annotations = [], []
    for record_id, caption, (w, h), regions in GROUND_TRUTH:
        images.append({"id": record_id, "file_name": f"{record_id}.jpg", "width": w, "height": h, "caption": caption})
        for span, (x1, y1, x2, y2) in regions:
            annotations.append({"id": len(annotations) + 1, "image_id": record_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "tokens_positive": [span], "category_id": 1, "iscrowd": 0})
    path = folder / "flickr_mdetr.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "x"}]}))
    return path


@pytest.mark.parametrize("writer", [write_jsonl, write_mdetr])
def test_recall_known_answer(tmp_path, writer):
    dataset = load_grounding_dataset(writer(tmp_path))
    assert [r.num_phrases for r in dataset.records] == [3, 1]
    assert dataset.records[0].phrase_text(1) == "two dogs"
    result = evaluate_grounding(dataset, predictions=PREDICTIONS)
    assert result.num_phrases == 4 and result.num_records == 2
    assert result.metrics == EXPECTED  # quarters: exact in floating point


def test_duplicate_records_and_bad_phrase_indices(tmp_path):
    line = {"filename": "a.jpg", "width": 10, "height": 10,
            "grounding": {"caption": "a cat", "regions": [{"bbox": [1, 1, 5, 5], "tokens_positive": [[2, 5]]}]}}
    path = tmp_path / "dup.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(EvaluationError, match="1 record with a duplicate image id \\('a.jpg'\\)"):
        load_grounding_dataset(path)
    dataset = load_grounding_dataset(write_jsonl(tmp_path))
    with pytest.raises(EvaluationError, match="1 record with a phrase_index that is not a phrase"):
        evaluate_grounding(dataset, predictions=[prediction(2, 1, [0, 0, 1, 1], 0.5)])


def test_record_id_separates_captions_of_one_image(tmp_path):
    """Several captions of one image are separate records when each line has its own ``id``."""
    lines = [{"id": number, "image_id": 7, "filename": "a.jpg", "width": 10, "height": 10,
              "grounding": {"caption": caption, "regions": [{"bbox": box, "tokens_positive": [[0, len(caption)]]}]}}
             for number, (caption, box) in enumerate([("a cat", [1, 1, 5, 5]), ("a dog", [5, 5, 9, 9])], start=1)]
    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    dataset = load_grounding_dataset(path)
    assert [r.id for r in dataset.records] == [1, 2]
    result = evaluate_grounding(dataset, predictions=[prediction(1, 0, [1, 1, 5, 5], 0.9),
                                                      prediction(2, 0, [1, 1, 5, 5], 0.9)])
    assert result.metrics["any_box"]["R@1"] == 0.5  # the cat found, the dog not: told apart by id


def test_faulty_records_are_counted_not_skipped(tmp_path):
    good = {"filename": "a.jpg", "image_id": 1, "width": 10, "height": 10,
            "grounding": {"caption": "a cat", "regions": [{"bbox": [1, 1, 5, 5], "tokens_positive": [[2, 5]]}]}}
    outside = json.loads(json.dumps(good))
    outside["image_id"] = 2
    outside["grounding"]["regions"][0]["bbox"] = [1, 1, 50, 5]
    path = tmp_path / "faulty.jsonl"
    path.write_text("\n".join([json.dumps(good), json.dumps(outside), "{oops"]) + "\n")
    with pytest.raises(EvaluationError) as error:
        load_grounding_dataset(path)
    assert "1 record with a box outside the image (" in str(error.value)
    assert "1 record with an invalid JSON" in str(error.value)
