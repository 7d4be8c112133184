"""``glip export``: the command path on a tiny checkpoint, and its one-line errors."""

from __future__ import annotations

import pytest

from glip.cli import main


def test_export_writes_and_checks_the_file(tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    args = ["export", str(tiny_checkpoint), "--classes", "circle", "square", "--out", str(out), "--size", "64", "64"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "2 phrases" in printed and "max abs difference scores" in printed
    before = out.stat().st_mtime_ns
    assert main(args) != 0  # never replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err and out.stat().st_mtime_ns == before
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/x.onnx"], "--classes"),
    (["--classes", "circle", "--out", "{tmp}/x.txt"], ".onnx"),
    (["--classes", "circle", "--out", "{tmp}/missing/x.onnx"], "does not exist"),
    (["--classes", "circle", "--out", "{tmp}"], ".onnx"),
])
def test_errors_are_one_line(tmp_path, capsys, args, message):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())
