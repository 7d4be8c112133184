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


# ---------------------------------------------------------------- where results go


def test_results_never_replace_an_input(tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "ow"
    folder.mkdir()
    picture = folder / "scene.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(picture)
    original = picture.read_bytes()
    args = ["detect", str(picture), "--classes", "star", "--weights", str(tiny_checkpoint), "--out", str(folder),
            "--threshold", "0", "--max-detections", "3", "--device", "cpu"]
    assert main(args) == 0
    assert picture.read_bytes() == original
    assert json.loads((folder / "scene.det.json").read_text())["image"] == str(picture)
    with Image.open(folder / "scene.det.png") as drawn:
        assert drawn.size == (80, 60)
    assert "scene.det.json" in capsys.readouterr().out
    assert main(args) == 0  # a second run replaces its own results, under the same names
    assert sorted(p.name for p in folder.iterdir()) == ["scene.det.json", "scene.det.png", "scene.png"]
    assert picture.read_bytes() == original


def test_same_stem_gets_distinct_names(tiny_checkpoint, tmp_path):
    first, second = tmp_path / "a" / "scene.png", tmp_path / "b" / "scene.jpg"
    for path, size in ((first, (40, 30)), (second, (50, 20))):
        path.parent.mkdir()
        Image.new("RGB", size, (200, 30, 30)).save(path)
    out = tmp_path / "out"
    assert main(["detect", str(first), str(second), "--classes", "x", "--weights", str(tiny_checkpoint),
                 "--out", str(out), "--threshold", "0", "--max-detections", "2", "--device", "cpu"]) == 0
    assert json.loads((out / "scene.json").read_text())["image"] == str(first)
    assert json.loads((out / "scene-2.json").read_text())["image"] == str(second)
    with Image.open(out / "scene-2.png") as drawn:
        assert drawn.size == (50, 20)


def test_plan_outputs_rules(tmp_path):
    from glip.cli_outputs import plan_outputs, png_marker

    out = tmp_path / "out"
    out.mkdir()
    inputs = [out / "scene.png", tmp_path / "scene.jpg", out / "scene.det.png", tmp_path / "x" / "Photo.png",
              tmp_path / "y" / "photo.png"]
    for path in inputs:
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(path)
    (out / "notes.json").write_text('{"mine": true}\n')  # a user's file: never replaced
    Image.new("RGB", (4, 4)).save(out / "old.png", pnginfo=png_marker())  # an earlier result: replaced
    (out / "old.json").write_text(json.dumps({k: None for k in
                                              ("image", "width", "height", "caption", "phrases", "detections")}))
    plan = plan_outputs([*inputs, tmp_path / "notes.png", tmp_path / "old.png"], out, ["", ".task"])
    names = [[paths.json.name for paths in row] for row in plan]
    assert names[0] == ["scene-2.json", "scene-3.json", "scene.det.det.json", "Photo.json", "photo-2.json",
                        "notes.det.json", "old.json"]
    assert names[1][:2] == ["scene.task.json", "scene.task-2.json"]
    assert all(paths.png == paths.json.with_suffix(".png") for row in plan for paths in row)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        plan_outputs(inputs[:1], inputs[1], [""])


# ---------------------------------------------------------------- arguments and inputs, before the model


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["--max-detections", "0"], "--max-detections: must be at least 1, got 0"),
    (["--max-detections", "-5"], "--max-detections: must be at least 1, got -5"),
    (["--device", "tpu"], "--device: 'tpu' is not a device: use cpu, cuda, cuda:N"),
    (["--threshold", "1.5"], "--threshold: must be within [0, 1]"),
    (["--max-megapixels", "0"], "--max-megapixels: must be above 0"),
])
def test_bad_option_values_are_usage_errors(image, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(image), "--classes", "x", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "range()" not in err


def test_option_values_accepted():
    from glip.cli import build_parser

    args = build_parser().parse_args(["detect", "a.png", "--classes", "x", "--config", "glip-nano", "--device",
                                      "cuda:1", "--all-names", "--max-megapixels", "100"])
    assert (args.config, args.device, args.all_names, args.max_megapixels) == ("glip-nano", "cuda:1", True, 100.0)
    defaults = build_parser().parse_args(["detect", "a.png", "--classes", "x"])
    assert (defaults.all_names, defaults.max_megapixels, defaults.batch_size) == (False, 25, 1)
    for device in ("cpu", "cuda", "mps"):
        assert build_parser().parse_args(["detect", "a.png", "--device", device]).device == device


def test_all_names_reaches_the_predictor(tiny_checkpoint, image, tmp_path, monkeypatch):
    from glip.predictor import GLIPPredictor

    seen = []
    original = GLIPPredictor.detect

    def spy(self, *args, **kwargs):
        seen.append(kwargs["all_names"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GLIPPredictor, "detect", spy)
    common = ["detect", str(image), "--classes", "circle", "square", "--weights", str(tiny_checkpoint),
              "--threshold", "0", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "all"), "--all-names"]) == 0
    assert seen == [False, True]
    one = json.loads((tmp_path / "one" / "shapes.json").read_text())["detections"]
    every = json.loads((tmp_path / "all" / "shapes.json").read_text())["detections"]
    boxes = [tuple(d["bbox_xyxy"]) for d in one]
    assert len(boxes) == len(set(boxes))  # each object once
    assert len(every) >= len(one)


def test_pixel_limit_refuses_before_the_model(tmp_path, capsys):
    import struct
    import warnings
    import zlib

    huge = tmp_path / "huge.png"  # a header claiming 12000x12000 (144 megapixels) in 100-odd bytes
    Image.new("RGB", (8, 8)).save(huge)
    data = bytearray(huge.read_bytes())
    header = b"IHDR" + struct.pack(">II", 12_000, 12_000) + bytes(data[24:29])
    data[12:29], data[29:33] = header, struct.pack(">I", zlib.crc32(header))
    huge.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["detect", str(huge), "--classes", "x", "--weights", str(tmp_path / "no-such-model.safetensors")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"error: {huge}: 12000x12000 is 144.0 megapixels, over the limit of 25; downscale the image or "
                   "raise the limit (--max-megapixels on the command line, max_pixels= in Python)\n")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    code = main(["detect", str(huge), "--classes", "x", "--max-megapixels", "150", "--weights",
                 str(tmp_path / "no-such-model.safetensors")])
    assert code == 2 and "huge.png: not an image or corrupt" in capsys.readouterr().err  # past the limit now


_NO_TORCH_CHECK = """
import sys
from glip.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("exit", code, "torch" in sys.modules, "transformers" in sys.modules, "torchvision" in sys.modules)
"""


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["detect", "--help"],
    ["detect", "missing.png", "--classes", "x"],
    ["detect", "a.png", "--classes", "x", "--batch-size", "0"],
    ["detect", "a.png"],
    ["eval", "--help"],
    ["train", "--help"],
    ["finetune", "--help"],
    ["serve", "--help"],
    ["shapes", "--help"],
    ["convert", "--help"],
    ["label", "--help"],
    ["label", "missing.tar", "--out", "out"],
])
def test_help_errors_and_missing_files_do_not_load_the_model_stack(tmp_path, argv):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _NO_TORCH_CHECK, *argv], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.stdout.splitlines()[-1].endswith("False False False"), result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("exit 0" if "--help" in argv else "exit 2")


def test_official_weights_offline_fail_at_once_without_the_model_stack(tmp_path):
    import os
    import subprocess
    import sys

    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GLIP_CACHE": str(tmp_path / "empty-cache")}
    result = subprocess.run([sys.executable, "-c", _NO_TORCH_CHECK, "detect", "x.png", "--classes", "a", "--weights",
                             "glip_tiny_model_o365_goldg.pth"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.stdout.splitlines()[-1] == "exit 2 False False False"
    assert result.stderr == ("error: glip_tiny_model_o365_goldg.pth is not in the cache and downloads are disabled "
                             f"(offline); place glip_tiny_model_o365_goldg.pth (from https://huggingface.co/GLIPModel/"
                             f"GLIP) at {tmp_path / 'empty-cache' / 'glip_tiny_model_o365_goldg.pth'}, or pass "
                             "--weights PATH\n")


def test_config_of_the_embedded_model_is_accepted(image, tmp_path):
    assert main(["detect", str(image), "--classes", "star", "--config", "glip-nano", "--out", str(tmp_path),
                 "--device", "cpu"]) == 0
    assert json.loads((tmp_path / "shapes.json").read_text())["phrases"] == ["star"]
