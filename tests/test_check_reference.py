"""The reference checker on every golden case (the official model's outputs), and that it fails
when our model is not the official one."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT, require_reference

CASES = [("glip_t_a", False), ("glip_t", False), ("glip_l", True)]


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_reference", REPO_ROOT / "tools" / "check_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_reference"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if slow else n for n, slow in CASES])
def test_reference_case_passes(checker, name, capsys):
    case = require_reference(name, "case_a")
    assert checker.main([str(case)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "RESULT PASS" in out
    assert "head_dot_product_logits_P3" in out and "detections (" in out


def test_checker_fails_on_other_weights(checker, tmp_path, capsys):
    """Same case, weights built with another seed: the checker must report failures and exit 1."""
    source = require_reference("glip_t_a", "case_a")
    case = tmp_path / "case_a"
    case.mkdir()
    for item in ("image.png", "inference.npz"):
        (case / item).symlink_to(source / item)
    for item in source.parent.glob("*.*"):
        if item.suffix in (".json", ".npz"):
            shutil.copy(item, tmp_path / item.name)
    meta = json.loads((source / "meta.json").read_text())
    meta["seed"] = meta["seed"] + 1
    (case / "meta.json").write_text(json.dumps(meta))
    assert checker.main([str(case)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "fpn_P3" in out.split("RESULT")[1]


def test_checkpoint_only_writes_official_file(checker, tmp_path):
    out = tmp_path / "rule.pth"
    assert checker.main([str(require_reference("glip_t_a", "case_a")), "--checkpoint-out", str(out),
                         "--checkpoint-only"]) == 0
    import torch

    checkpoint = torch.load(out, map_location="cpu", weights_only=True)
    assert set(checkpoint) >= {"model", "optimizer", "iteration"}
    assert all(key.startswith("module.") for key in checkpoint["model"])
