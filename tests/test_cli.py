"""The `glip` command line: detect and convert, and one-line errors with non-zero exits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from glip.cli import main


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "shapes.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)).save(path)
    return path


def test_detect_writes_json_and_png(tiny_checkpoint, image, tmp_path, capsys):
    code = main(["detect", str(image), "--classes", "circle", "square", "--weights", str(tiny_checkpoint),
                 "--threshold", "0", "--max-detections", "7", "--out", str(tmp_path), "--device", "cpu"])
    assert code == 0
    record = json.loads((tmp_path / "shapes.json").read_text())
    assert set(record) == {"image", "width", "height", "caption", "phrases", "detections"}
    assert (record["width"], record["height"]) == (130, 90)
    assert record["phrases"] == ["circle", "square"] and len(record["detections"]) == 7
    assert set(record["detections"][0]) == {"bbox_xyxy", "score", "phrase", "phrase_index"}
    with Image.open(tmp_path / "shapes.png") as drawn:
        assert drawn.size == (130, 90)
    assert "7 detections" in capsys.readouterr().out


def test_detect_caption_with_phrases(tiny_checkpoint, image, tmp_path):
    code = main(["detect", str(image), "--caption", "a circle and a square", "--phrase", "circle",
                 "--phrase", "square", "--weights", str(tiny_checkpoint), "--out", str(tmp_path), "--threshold", "0"])
    assert code == 0
    assert json.loads((tmp_path / "shapes.json").read_text())["phrases"] == ["circle", "square"]


@pytest.mark.parametrize("args, message", [
    (["--caption", ""], "caption"),
    (["--caption", "a red circle", "--phrase", "blue square"], "blue square"),
    (["--classes", "circle", "--device", "cuda"], "CUDA"),
])
def test_detect_errors_are_one_line(tiny_checkpoint, image, tmp_path, capsys, monkeypatch, args, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["detect", str(image), *args, "--weights", str(tiny_checkpoint), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_bad_image_and_bad_weights(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    assert main(["detect", str(bad), "--classes", "x", "--weights", str(tiny_checkpoint)]) != 0
    assert "notes.txt" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    good = tmp_path / "ok.png"
    Image.new("RGB", (40, 40)).save(good)
    assert main(["detect", str(good), "--classes", "x", "--weights", str(junk)]) != 0
    err = capsys.readouterr().err
    assert "junk.pth" in err and "Traceback" not in err


def test_zero_classes_is_a_usage_error(image, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(image), "--classes"])
    assert exit_info.value.code != 0


def test_debug_shows_the_traceback(tiny_checkpoint, tmp_path):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    with pytest.raises(Exception, match="empty"):
        main(["detect", str(bad), "--classes", "x", "--weights", str(tiny_checkpoint), "--debug"])
