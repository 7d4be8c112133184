"""``glip convert``: a training checkpoint becomes a model file (EMA or trained weights, float16 or
float32), frozen parameters it left out come back from their source; official .pth as before;
never over an existing file without --overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from synthetic_shapes import tiny_config
from glip.checkpoint import load_glip, save_glip
from glip.cli import main as glip_main
from glip.config import get_config
from glip.modeling import GLIP
from glip.training import checkpointing
from glip.training.export import export_training_checkpoint
from glip.training.train_config import TrainConfig
from glip.training.trainer import Trainer


@pytest.fixture(scope="module")
def run(shapes_64, tmp_path_factory) -> tuple[Trainer, Path, Path]:
    """Two steps from a weights file with backbone and text encoder frozen; returns the trainer,
    its last checkpoint and the weights file."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(5)
    weights = save_glip(GLIP(get_config("glip-tiny")), root / "start.safetensors")
    config = tiny_config(shapes_64, root / "run", model={"weights": str(weights)},
                         train={"max_steps": 2, "freeze": ["backbone", "text_encoder"]})
    trainer = Trainer(TrainConfig.from_dict(config))
    trainer.fit()
    return trainer, checkpointing.latest_checkpoint(root / "run" / "checkpoints"), weights


def _convert(*arguments: object) -> int:
    return glip_main(["convert", *map(str, arguments)])


def test_ema_by_default_trained_weights_with_no_ema(run, tmp_path, capsys) -> None:
    trainer, checkpoint, _ = run
    assert checkpointing.load_checkpoint(checkpoint)["frozen"]  # the frozen part is not in the file
    assert _convert(checkpoint, tmp_path / "ema.safetensors") == 0
    assert "converted training checkpoint" in capsys.readouterr().out
    torch.testing.assert_close(load_glip(tmp_path / "ema.safetensors").state_dict(),
                               trainer.ema.module.state_dict(), rtol=0, atol=0)
    assert _convert(checkpoint, tmp_path / "model.safetensors", "--no-ema") == 0
    torch.testing.assert_close(load_glip(tmp_path / "model.safetensors").state_dict(),
                               trainer.model.state_dict(), rtol=0, atol=0)
    with safe_open(str(tmp_path / "ema.safetensors"), framework="pt") as handle:
        assert handle.metadata()["step"] == "2" and handle.metadata()["weights"] == "ema"


def test_float16(run, tmp_path) -> None:
    trainer, checkpoint, _ = run
    assert _convert(checkpoint, tmp_path / "half.safetensors", "--dtype", "float16", "--ema") == 0
    with safe_open(str(tmp_path / "half.safetensors"), framework="pt") as handle:
        assert handle.get_tensor("head.bias0").dtype == torch.float16
    loaded = load_glip(tmp_path / "half.safetensors").state_dict()
    expected = trainer.ema.module.state_dict()
    torch.testing.assert_close(loaded["head.bias0"], expected["head.bias0"].half().float())


def test_never_over_an_existing_file_without_overwrite(run, tmp_path, capsys) -> None:
    _, checkpoint, _ = run
    out = tmp_path / "x.safetensors"
    assert _convert(checkpoint, out) == 0
    out.write_bytes(b"keep me")
    capsys.readouterr()
    assert _convert(checkpoint, out) == 2
    error = capsys.readouterr().err
    assert "already exist" in error and "--overwrite" in error and error.count("\n") == 1
    assert out.read_bytes() == b"keep me"
    assert _convert(checkpoint, out, "--overwrite") == 0
    assert load_glip(out).config.name == "glip-tiny"


def test_bad_requests_are_one_line(run, tmp_path, capsys) -> None:
    _, checkpoint, _ = run
    for arguments, expected in [
        ((checkpoint, tmp_path / "x.pt"), "the output is a .safetensors file"),
        ((tmp_path / "missing.pt", tmp_path / "x.safetensors"), "missing.pt does not exist"),
        ((checkpoint, tmp_path / "x.safetensors", "--config", "glip-t"), "--config checks official checkpoints"),
    ]:
        assert _convert(*arguments) == 2
        error = capsys.readouterr().err
        assert expected in error and error.count("\n") == 1, error
    assert not (tmp_path / "x.safetensors").exists()


def test_a_run_without_ema(shapes_64, tmp_path, capsys) -> None:
    config = tiny_config(shapes_64, tmp_path / "run", train={"max_steps": 1, "ema_decay": None})
    trainer = Trainer(TrainConfig.from_dict(config))
    trainer.fit()
    checkpoint = checkpointing.latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert _convert(checkpoint, tmp_path / "ema.safetensors", "--ema") == 2
    assert "has no EMA weights" in capsys.readouterr().err
    assert _convert(checkpoint, tmp_path / "out.safetensors") == 0  # default: the trained weights
    torch.testing.assert_close(load_glip(tmp_path / "out.safetensors").state_dict(), trainer.model.state_dict(),
                               rtol=0, atol=0)


def test_changed_source_is_refused_and_a_full_checkpoint_needs_no_source(run, tmp_path) -> None:
    trainer, checkpoint, weights = run
    state = checkpointing.load_checkpoint(checkpoint)
    # A checkpoint that stores every parameter (as version 1 did) converts without its weights file.
    full = {**state, "version": 1, "frozen": None, "model": trainer.model.state_dict(),
            "ema": {"decay": 0.9, "weights": trainer.ema.module.state_dict()}}
    full["config"] = {**state["config"], "model": {**state["config"]["model"], "weights": str(tmp_path / "gone")}}
    old = checkpointing.atomic_save(full, tmp_path / "step_00000002.pt")
    path = export_training_checkpoint(old, tmp_path / "full.safetensors")
    torch.testing.assert_close(load_glip(path).state_dict(), trainer.ema.module.state_dict(), rtol=0, atol=0)
    # The left-out parameters come from the weights file: another file is refused.
    moved = dict(state)
    other = str(tmp_path / "o.safetensors")
    moved["config"] = {**state["config"], "model": {**state["config"]["model"], "weights": other}}
    torch.manual_seed(9)
    save_glip(GLIP(get_config("glip-tiny")), tmp_path / "o.safetensors")
    changed = checkpointing.atomic_save(moved, tmp_path / "step_00000003.pt")
    with pytest.raises(checkpointing.FrozenWeightsMismatch, match="does not store its .* frozen parameters"):
        export_training_checkpoint(changed, tmp_path / "changed.safetensors")


def test_official_pth_as_before(tmp_path, monkeypatch, capsys) -> None:
    import glip.checkpoint

    torch.manual_seed(0)
    model = GLIP(get_config("glip-tiny"))
    official = tmp_path / "official.pth"
    official.write_bytes(b"read by load_official")
    asked = []
    monkeypatch.setattr(glip.checkpoint, "load_official", lambda path, config: asked.append((path, config)) or model)
    assert _convert(official, tmp_path / "out.safetensors", "--config", "glip-t") == 0
    assert asked == [(official, "glip-t")]
    assert "converted" in capsys.readouterr().out
    torch.testing.assert_close(load_glip(tmp_path / "out.safetensors").state_dict(), model.state_dict())
    assert _convert(official, tmp_path / "other.safetensors", "--no-ema") == 2
    assert "--ema/--no-ema choose the weights of a training checkpoint" in capsys.readouterr().err
