"""Running the tiny model through the evaluation: category mapping, chunking, round trips."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from eval_helpers import coco

from glip.evaluation import evaluate, evaluate_detection, evaluate_grounding, load_dataset, write_report
from glip.evaluation.inference import predict_detections


@pytest.fixture(scope="module")
def odd_ids_file(image_folder, tmp_path_factory):
    """Non-contiguous category ids, one with a descriptive prompt override."""
    gt = coco([1, 2], [(1, 17, [5, 5, 30, 30]), (2, 3, [40, 20, 30, 30])],
              [(17, "stingray"), (3, "puffin"), (40, "shark")], size=(80, 60))
    path = tmp_path_factory.mktemp("odd") / "odd.json"
    path.write_text(json.dumps(gt))
    return path


def test_phrase_indices_map_to_category_ids(small_predictor, image_folder, odd_ids_file):
    prompts = {"stingray": "stingray, which is flat and round"}
    dataset = load_dataset(odd_ids_file, image_folder, prompts=prompts)
    output = predict_detections(small_predictor, dataset)
    expected = small_predictor.detect([image_folder / "1.png", image_folder / "2.png"], threshold=0.0,
                                      classes=["stingray, which is flat and round", "puffin", "shark"],
                                      all_names=True)  # evaluation keeps every (box, name) pair
    ids = [17, 3, 40]
    for image_id, detections in zip([1, 2], expected):
        ours = Counter((p["category_id"], round(p["score"], 5))
                       for p in output.predictions if p["image_id"] == image_id)
        theirs = Counter((ids[d.phrase_index], round(d.score, 5)) for d in detections.detections)
        assert ours == theirs and len(ours) > 0


def test_predictions_file_round_trip(small_predictor, detection_file, image_folder, tmp_path):
    result = evaluate(detection_file, small_predictor, batch_size=2)
    assert result.timing["images"] == 4 and result.timing["images_per_second"] > 0
    written = write_report(result, tmp_path, plots=False, save_predictions_file=True)
    again = evaluate(detection_file, predictions=written["predictions"])
    assert again.metrics == result.metrics and again.per_category == result.per_category


def test_image_side_once_per_batch_or_once_per_chunk(small_predictor, image_folder, monkeypatch, tmp_path):
    names = [(i + 1, f"category number {i} with a long descriptive name") for i in range(60)]
    gt = coco([1, 2, 3], [(1, 1, [5, 5, 30, 30]), (2, 7, [10, 10, 20, 20]), (3, 60, [0, 0, 80, 60])], names,
              size=(80, 60))
    (tmp_path / "many.json").write_text(json.dumps(gt))
    dataset = load_dataset(tmp_path / "many.json", image_folder)
    model = small_predictor.model
    calls = []
    original = model.encode_images
    monkeypatch.setattr(model, "encode_images", lambda images: calls.append(images.shape[0]) or original(images))
    once = evaluate_detection(dataset, small_predictor, batch_size=2)
    chunks = once.timing["prompt_chunks"]
    assert chunks > 1 and calls == [2, 1]
    calls.clear()
    rerun = evaluate_detection(dataset, small_predictor, batch_size=2, reuse_image_features=False)
    assert len(calls) == 2 * chunks
    assert rerun.metrics == once.metrics
    assert [p["category_id"] for p in rerun.predictions] == [p["category_id"] for p in once.predictions]


def test_grounding_with_the_model(small_predictor, image_folder, tmp_path):
    lines = [{"filename": f"{i}.png", "image_id": i, "width": 80, "height": 60,
              "grounding": {"caption": "a red star above a blue ring", "regions": [
                  {"bbox": [5, 5, 40, 30], "tokens_positive": [[0, 10]]},
                  {"bbox": [30, 30, 70, 55], "tokens_positive": [[17, 28]]}]}} for i in (1, 2, 3)]
    path = tmp_path / "shapes.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = evaluate(path, small_predictor, images=image_folder, batch_size=2)
    assert result.task == "grounding" and result.num_phrases == 6
    assert {p["phrase_index"] for p in result.predictions} <= {0, 1}
    assert all(0.0 <= v <= 1.0 for values in result.metrics.values() for v in values.values())
    again = evaluate_grounding(load_dataset(path), predictions=result.predictions)
    assert again.metrics == result.metrics
