"""A multi-dataset suite from YAML: each dataset's AP, the mean, prompt overrides, errors."""

from __future__ import annotations

import json

import pytest
from eval_helpers import coco, det

from glip.evaluation import EvaluationError, evaluate, load_suite

SUITE = """
name: mini-odinw
datasets:
  - name: aquarium
    annotations: aquarium/test.json
    prompts:
      stingray: "stingray, which is flat and round"
    predictions: preds/aquarium.json
  - name: pothole
    annotations: pothole.json
    images: pothole_images
  - name: phrases
    annotations: phrases.jsonl
    task: grounding
"""


@pytest.fixture()
def suite_dir(tmp_path):
    (tmp_path / "aquarium").mkdir()
    (tmp_path / "preds").mkdir()
    aquarium = coco([1], [(1, 1, [0, 0, 10, 10]), (1, 2, [20, 20, 10, 10])], [(1, "fish"), (2, "stingray")])
    (tmp_path / "aquarium" / "test.json").write_text(json.dumps(aquarium))
    perfect = [det(1, 1, [0, 0, 10, 10], 0.9), det(1, 2, [20, 20, 10, 10], 0.8)]
    (tmp_path / "preds" / "aquarium.json").write_text(json.dumps(perfect))
    pothole = coco([1], [(1, 1, [0, 0, 10, 10])], [(1, "pothole")])
    (tmp_path / "pothole.json").write_text(json.dumps(pothole))
    (tmp_path / "phrases.jsonl").write_text(json.dumps(
        {"filename": "a.jpg", "image_id": 1, "width": 20, "height": 20,
         "grounding": {"caption": "a cat", "regions": [{"bbox": [1, 1, 9, 9], "tokens_positive": [[2, 5]]}]}}) + "\n")
    (tmp_path / "suite.yaml").write_text(SUITE)
    return tmp_path


def test_suite_reports_each_dataset_and_the_mean(suite_dir):
    folder = suite_dir / "more_preds"
    folder.mkdir()
    (folder / "pothole.json").write_text(json.dumps([det(1, 1, [0, 0, 6.2, 10], 0.9)]))  # IoU 0.62 -> AP 0.3
    (folder / "phrases.json").write_text(json.dumps(
        [{"image_id": 1, "phrase_index": 0, "bbox": [1, 1, 8, 8], "score": 0.5}]))
    result = evaluate(suite_dir / "suite.yaml", predictions=folder)
    aps = {r.name: r.metrics.get("AP") for r in result.results if r.task == "detection"}
    assert aps == pytest.approx({"aquarium": 1.0, "pothole": 0.3})
    assert result.metrics["mean_AP"] == pytest.approx(0.65)
    assert result.metrics["num_detection_datasets"] == 2 and result.metrics["num_grounding_datasets"] == 1
    grounding = result.results[2]
    assert grounding.metrics["any_box"]["R@1"] == 1.0
    aquarium = result.results[0]
    assert [row["prompt"] for row in aquarium.per_category] == ["fish", "stingray, which is flat and round"]
    assert json.loads(json.dumps(result.to_dict()))["results"][1]["name"] == "pothole"


def test_suite_without_predictions_or_model(suite_dir):
    with pytest.raises(EvaluationError, match="dataset 'pothole' has no predictions file and no model"):
        evaluate(suite_dir / "suite.yaml")


def test_suite_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets:\n  - annotations: a.json\n    promtps: {}\n")
    with pytest.raises(EvaluationError, match="unknown keys \\['promtps'\\]"):
        load_suite(path)
    path.write_text("datasets:\n  - annotations: a.json\n  - annotations: b/a.json\n")
    with pytest.raises(EvaluationError, match="names must be unique"):
        load_suite(path)
    path.write_text("datasets: []\n")
    with pytest.raises(EvaluationError, match="empty"):
        load_suite(path)
