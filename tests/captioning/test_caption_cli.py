"""glip caption and glip caption-eval end to end on a tiny caption model."""

from __future__ import annotations

import json

import pytest

from caption_model import save_caption_glip, write_caption_data


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_caption_glip(tmp_path_factory.mktemp("caption") / "caption.safetensors", max_tokens=4)


def test_caption_writes_one_json_per_image(weights, tmp_path, capsys):
    from glip.cli import main

    data = write_caption_data(tmp_path / "data", count=2)
    images = [str(data.parent / "img0.png"), str(data.parent / "img1.png")]
    out = tmp_path / "out"
    assert main(["caption", *images, "--weights", str(weights), "--beam", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("img0", "img1"):
        record = json.loads((out / f"{name}.json").read_text())
        assert set(record) == {"image", "width", "height", "caption", "phrases", "truncated"}
        assert (record["width"], record["height"]) == (48, 48) and record["phrases"] == []
        assert f"{name}.png: {record['caption']}" in printed
    # a second run replaces its own results; a foreign file is kept unless --overwrite
    assert main(["caption", images[0], "--weights", str(weights), "--out", str(out)]) == 0
    (out / "img1.json").write_text("{\"mine\": 1}")
    assert main(["caption", images[1], "--weights", str(weights), "--out", str(out)]) == 2
    assert "not an earlier caption result" in capsys.readouterr().err
    assert json.loads((out / "img1.json").read_text()) == {"mine": 1}


def test_caption_errors_are_one_line(tmp_path, capsys):
    from glip.cli import main

    assert main(["caption", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    data = write_caption_data(tmp_path / "data", count=1)
    # the embedded model has no caption head
    assert main(["caption", str(data.parent / "img0.png"), "--out", str(tmp_path / "o")]) == 2
    assert "no caption head" in capsys.readouterr().err


def test_caption_eval_prints_bleu_and_cider(weights, tmp_path, capsys):
    from glip.cli import main

    data = write_caption_data(tmp_path / "data", count=2)
    out = tmp_path / "predictions.json"
    assert main(["caption-eval", str(weights), str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 images, beam 1: BLEU-4" in printed and "CIDEr" in printed
    assert len(json.loads(out.read_text())) == 2
    (tmp_path / "data" / "img1.png").unlink()
    assert main(["caption-eval", str(weights), str(data)]) == 2
    assert "images are missing" in capsys.readouterr().err
