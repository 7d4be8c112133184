"""``glip vqa`` and ``glip vqa-eval``: one JSON per image and a table, one-line errors (empty question,
a model without a VQA head, a file that is not ours), accuracy printed overall and per question type."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from glip.cli import main
from vqa_data import write_vqa_data
from vqa_model import ANSWERS, save_vqa_glip


@pytest.fixture(scope="module")
def vqa_checkpoint(tmp_path_factory):
    return save_vqa_glip(tmp_path_factory.mktemp("vqa") / "glip-tiny.safetensors")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for index, name in enumerate(["a/scene.png", "b/scene.png"]):
        path = folder / name
        path.parent.mkdir()
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_every_question_of_every_image_is_answered_into_one_json_each(vqa_checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["vqa", *map(str, images), "--question", "how many stars are there?", "--question", "is it red?",
                 "--weights", str(vqa_checkpoint), "--top-k", "2", "--out", str(out), "--device", "cpu"])
    assert code == 0
    first, second = (json.loads((out / name).read_text()) for name in ("scene.json", "scene-2.json"))
    assert (first["image"], first["width"], first["height"]) == (str(images[0]), 60, 40)
    assert second["image"] == str(images[1])
    assert [qa["question"] for qa in first["qa"]] == ["how many stars are there?", "is it red?"]
    answers = first["qa"][0]["answers"]
    assert len(answers) == 2 and answers[0]["score"] >= answers[1]["score"] and answers[0]["answer"] in ANSWERS
    printed = capsys.readouterr().out
    assert "how many stars are there?" in printed and answers[0]["answer"] in printed
    # A second run replaces its own results; a file that is not one stays unless --overwrite.
    (out / "scene-2.json").write_text("my notes")
    assert main(["vqa", *map(str, images), "--question", "is it red?", "--weights", str(vqa_checkpoint),
                 "--out", str(out)]) == 2
    assert "not a glip vqa result" in capsys.readouterr().err
    assert (out / "scene-2.json").read_text() == "my notes"


def test_bad_input_is_one_line(vqa_checkpoint, tiny_checkpoint, images, tmp_path, capsys):
    assert main(["vqa", str(images[0]), "--question", " ", "--weights", str(vqa_checkpoint),
                 "--out", str(tmp_path)]) == 2
    assert "--question 1 is empty" in capsys.readouterr().err
    assert main(["vqa", str(images[0]), "--question", "is it red?", "--weights", str(tiny_checkpoint),
                 "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no VQA answer head" in error and "glip vqa-train" in error
    assert main(["vqa", str(images[0]), "--question", "is it " + "very " * 300 + "red?", "--weights",
                 str(vqa_checkpoint), "--out", str(tmp_path)]) == 2
    assert "more than the model's text window" in capsys.readouterr().err


def test_vqa_eval_prints_accuracy_overall_and_per_question_type(vqa_checkpoint, tmp_path, capsys):
    root = write_vqa_data(tmp_path / "data", images=2)
    right = [{"question_id": r["question_id"], "answer": r["answers"][0]}
             for r in map(json.loads, (root / "vqa.jsonl").read_text().splitlines())]
    (tmp_path / "results.json").write_text(json.dumps(right))
    assert main(["vqa-eval", "--questions", str(root / "questions.json"), "--annotations",
                 str(root / "annotations.json"), "--predictions", str(tmp_path / "results.json"),
                 "--out", str(tmp_path / "scored")]) == 0
    printed = capsys.readouterr().out
    assert "VQA accuracy 100.00 (8 questions)" in printed and "count" in printed and "yes/no" in printed
    assert json.loads((tmp_path / "scored" / "vqa_metrics.json").read_text())["overall"] == 1.0
    assert main(["vqa-eval", "--questions", str(root / "vqa.jsonl"), "--weights", str(vqa_checkpoint),
                 "--out", str(tmp_path / "model"), "--device", "cpu", "--no-progress"]) == 0
    results = json.loads((tmp_path / "model" / "vqa_results.json").read_text())
    assert len(results) == 8 and all(r["answer"] in ANSWERS for r in results)
    assert "per question type" in capsys.readouterr().out


def test_help_and_missing_files_answer_without_loading_torch(tmp_path):
    import subprocess
    import sys

    check = ("import sys\nfrom glip.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    code = e.code\nprint('exit', code, 'torch' in sys.modules)\n")
    for argv, code in ((["vqa", "--help"], 0), (["vqa-train", "--help"], 0), (["vqa-eval", "--help"], 0),
                       (["vqa", "missing.png", "--question", "is it red?"], 2)):
        result = subprocess.run([sys.executable, "-c", check, *argv], capture_output=True, text=True, cwd=tmp_path)
        assert result.stdout.splitlines()[-1] == f"exit {code} False", result.stdout + result.stderr
