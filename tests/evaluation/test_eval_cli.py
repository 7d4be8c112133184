"""``glip eval`` (evaluation.cli.main): reports from predictions or a model, one-line errors."""

from __future__ import annotations

import json

import pytest
from eval_helpers import coco, det

from glip.evaluation.cli import main


@pytest.fixture()
def files(tmp_path):
    gt = coco([1, 2], [(1, 1, [10, 10, 20, 20]), (2, 2, [5, 5, 10, 10])])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    predictions = [det(1, 1, [10, 10, 20, 20], 0.9), det(2, 2, [5, 5, 10, 10], 0.8)]
    (tmp_path / "preds.json").write_text(json.dumps(predictions))
    return tmp_path


def test_predictions_file(files, capsys):
    out = files / "report"
    code = main(["--dataset", str(files / "gt.json"), "--predictions", str(files / "preds.json"), "--out", str(out),
                 "--no-plots", "--name", "toy"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "toy (coco, 2 images): AP 100.0  AP50 100.0" in printed
    assert json.loads((out / "metrics.json").read_text())["metrics"]["AP"] == pytest.approx(1.0)
    assert (out / "report.md").read_text().startswith("# Detection: toy")


def test_errors_are_one_line(files, capsys):
    (files / "bad.json").write_text(json.dumps([det(9, 1, [0, 0, 1, 1], 0.5)]))
    code = main(["--dataset", str(files / "gt.json"), "--predictions", str(files / "bad.json"), "--out",
                 str(files / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {files / 'bad.json'}: 1 record with an unknown image id (9)")
    with pytest.raises(Exception, match="unknown image id"):
        main(["--dataset", str(files / "gt.json"), "--predictions", str(files / "bad.json"), "--debug"])


def test_model_run_writes_predictions(small_checkpoint, detection_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--weights", str(small_checkpoint), "--dataset", str(detection_file), "--out", str(out),
                 "--device", "cpu", "--batch-size", "2", "--no-progress", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and {p["category_id"] for p in predictions} <= {1, 2, 3}
    code = main(["--dataset", str(detection_file), "--predictions", str(out / "predictions.json"), "--out",
                 str(tmp_path / "again"), "--no-plots"])
    assert code == 0
    first = json.loads((out / "metrics.json").read_text())
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert first["metrics"] == second["metrics"]


def test_prompt_overrides_reach_the_model(small_checkpoint, detection_file, tmp_path, capsys):
    """--prompts rewrites the categories' prompts: same categories, other scores; unknown names fail."""
    def run(out, *extra):
        code = main(["--weights", str(small_checkpoint), "--dataset", str(detection_file), "--out", str(out),
                     "--device", "cpu", "--no-progress", "--no-plots", *extra])
        assert code == 0, capsys.readouterr().err
        return json.loads((out / "predictions.json").read_text())

    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("circle: a round red circle\nstar: {prefix: 'a bright ', phrase: star}\n")
    plain, engineered = run(tmp_path / "plain"), run(tmp_path / "engineered", "--prompts", str(prompts))
    assert {p["category_id"] for p in engineered} <= {1, 2, 3}
    assert sorted(p["score"] for p in plain) != sorted(p["score"] for p in engineered)
    (tmp_path / "bad.yaml").write_text("hexagon: a hexagon\n")
    code = main(["--weights", str(small_checkpoint), "--dataset", str(detection_file), "--out", str(tmp_path / "x"),
                 "--device", "cpu", "--no-progress", "--prompts", str(tmp_path / "bad.yaml")])
    assert code == 2 and "prompt overrides name no category ('hexagon')" in capsys.readouterr().err
