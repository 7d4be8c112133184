"""``glip finetune`` then ``glip detect --adapter`` from the command line."""

from __future__ import annotations

import json

from glip.cli import main


def test_finetune_then_detect_with_the_adapter(base_weights, task_train, task_val, tmp_path, capsys):
    out = tmp_path / "task"
    code = main(["finetune", "--train", str(task_train), "--train-images", str(task_train.parent / "images"),
                 "--val", str(task_val), "--val-images", str(task_val.parent / "images"), "--weights",
                 str(base_weights), "--mode", "prompt", "--shots", "1", "--steps", "1", "--batch-size", "4",
                 "--device", "cpu", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["shots"] == 1 and result["train_images"] <= 3 and "AP" in result["metrics"]
    image = next((task_val.parent / "images").glob("*.png"))
    code = main(["detect", str(image), "--weights", str(base_weights), "--adapter", str(out / "adapter.safetensors"),
                 "--threshold", "0", "--out", str(tmp_path / "det")])
    assert code == 0, capsys.readouterr().err
    written = json.loads((tmp_path / "det" / f"{image.stem}.task.json").read_text())
    assert written["phrases"] == ["circle", "square", "triangle"] and written["detections"]


def test_finetune_errors_are_one_line(task_train, tmp_path, capsys):
    code = main(["finetune", "--train", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "missing.json does not exist" in err
