"""torchrun with two processes gives the same predictions and numbers as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from eval_helpers import coco
from PIL import Image

from glip.evaluation import evaluate, load_dataset


@pytest.fixture()
def dataset_file(tmp_path, small_predictor):
    """Five images; ground truth made from the model's own best boxes (moved a little), so AP is
    neither 0 nor 1 and depends on every detection."""
    rng = np.random.default_rng(3)
    for index in range(1, 6):
        Image.fromarray(rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)).save(tmp_path / f"{index}.png")
    gt = coco([1, 2, 3, 4, 5], [], [(1, "circle"), (2, "square")], size=(80, 60))
    gt["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    first = evaluate(tmp_path / "gt.json", small_predictor)
    annotations = []
    for image in range(1, 6):
        best = sorted((p for p in first.predictions if p["image_id"] == image), key=lambda p: -p["score"])[:3]
        for shift, p in enumerate(best):
            x, y, w, h = p["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": image, "category_id": p["category_id"],
                                "bbox": [x + shift, y, w, h], "area": w * h, "iscrowd": 0})
    gt["annotations"] = annotations
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return tmp_path / "gt.json"


def run(command: list[str], cwd) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_two_processes_equal_one(dataset_file, small_checkpoint, tmp_path):
    arguments = ["-m", "glip.evaluation.cli", "--weights", str(small_checkpoint), "--dataset", str(dataset_file),
                 "--device", "cpu", "--batch-size", "2", "--no-plots", "--no-progress"]
    run([sys.executable, *arguments, "--out", str(tmp_path / "one")], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *arguments,
         "--out", str(tmp_path / "two")], tmp_path)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["timing"]["processes"] == 2 and one["timing"]["processes"] == 1
    assert 0.0 < one["metrics"]["AP"] < 1.0
    assert two["metrics"] == one["metrics"] and two["per_category"] == one["per_category"]
    assert two["precision_recall"] == one["precision_recall"]
    predictions_one = json.loads((tmp_path / "one" / "predictions.json").read_text())
    predictions_two = json.loads((tmp_path / "two" / "predictions.json").read_text())
    assert predictions_two == predictions_one
    assert load_dataset(dataset_file).images[4].id in {p["image_id"] for p in predictions_two}
