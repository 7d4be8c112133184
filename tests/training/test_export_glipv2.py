"""Export of a GLIPv2 model (pre-training heads and mask head): ``glip convert`` leaves the
training-only pre-training heads out unless asked to keep them and always keeps the mask head;
the official format writes the detector alone on request, else one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from glip.checkpoint import CheckpointError, export_official_state_dict, load_glip
from glip.cli import main as glip_main
from glip.config import get_config
from glip.modeling import GLIP
from glip.training import checkpointing
from glip.training.starting_model import build_model
from glip.training.train_config import TrainConfig

GLIPV2_OVERRIDES = {"pretraining": {"inter_image": True, "mlm": True},
                    "mask_head": {"enabled": True, "channels": 8, "num_convs": 2}}


def _training_config(tmp_path: Path) -> TrainConfig:
    return TrainConfig.from_dict({
        "model": {"config": "glip-tiny", "overrides": GLIPV2_OVERRIDES},
        "data": {"datasets": [{"type": "coco", "annotations": str(tmp_path / "unused.json")}]},
        "train": {"max_steps": 1, "batch_size": 1, "device": "cpu"},
        "output": {"dir": str(tmp_path / "run")},
    })


@pytest.fixture(scope="module")
def glipv2_checkpoint(tmp_path_factory) -> tuple[Path, GLIP]:
    """A training checkpoint (every tensor stored, no EMA) of glip-tiny with the pre-training heads
    and the mask head, as a GLIPv2 run writes it; and the model it holds."""
    root = tmp_path_factory.mktemp("glipv2-export")
    config = _training_config(root)
    torch.manual_seed(3)
    model = build_model(config.model).model
    assert model.pretraining_heads is not None and model.mask_head is not None
    state = {"format": checkpointing.TRAINING_FORMAT, "version": 2, "step": 7, "config": config.to_dict(),
             "model": model.state_dict(), "frozen": None, "ema": None}
    return checkpointing.atomic_save(state, root / "step_00000007.pt"), model


def test_convert_leaves_the_pretraining_heads_out_and_keeps_the_mask_head(glipv2_checkpoint, tmp_path, capsys):
    checkpoint, model = glipv2_checkpoint
    assert glip_main(["convert", str(checkpoint), str(tmp_path / "v2.safetensors")]) == 0, capsys.readouterr().err
    loaded = load_glip(tmp_path / "v2.safetensors")
    assert loaded.pretraining_heads is None and loaded.mask_head is not None
    assert "pretraining" not in loaded.config.to_dict() and loaded.config.mask_head.enabled
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("pretraining_heads.")}
    torch.testing.assert_close(loaded.state_dict(), expected, rtol=0, atol=0)
    with safe_open(str(tmp_path / "v2.safetensors"), framework="pt") as handle:
        assert not any(key.startswith("pretraining_heads.") for key in handle.keys())
        assert handle.metadata()["pretraining_heads"] == "left out (training only)"


def test_convert_keeps_them_on_request(glipv2_checkpoint, tmp_path, capsys):
    checkpoint, model = glipv2_checkpoint
    out = tmp_path / "pretrain.safetensors"
    assert glip_main(["convert", str(checkpoint), str(out), "--keep-pretraining-heads"]) == 0, capsys.readouterr().err
    loaded = load_glip(out)
    assert loaded.pretraining_heads is not None and loaded.config.pretraining.inter_image
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)
    official = tmp_path / "official.pth"
    official.write_bytes(b"not read")
    assert glip_main(["convert", str(official), str(tmp_path / "o.safetensors"), "--keep-pretraining-heads"]) == 2
    error = capsys.readouterr().err
    assert "--keep-pretraining-heads applies to training checkpoints" in error and error.count("\n") == 1


@pytest.mark.parametrize("overrides, named", [
    ({"pretraining": {"inter_image": True, "mlm": True}}, "pretraining_heads: pre-training heads"),
    ({"mask_head": {"enabled": True, "channels": 8, "num_convs": 2}}, "mask_head: language-aware mask head"),
])
def test_official_format_refuses_glipv2_parts_in_one_line(overrides, named):
    import dataclasses

    from glip.config import MaskHeadConfig, PretrainingConfig

    config = get_config("glip-tiny")
    if "pretraining" in overrides:
        config = dataclasses.replace(config, pretraining=PretrainingConfig(**overrides["pretraining"]))
    else:
        config = dataclasses.replace(config, mask_head=MaskHeadConfig(**overrides["mask_head"]))
    model = GLIP(config)
    with pytest.raises(CheckpointError) as raised:
        export_official_state_dict(model)
    message = str(raised.value)
    assert named in message and "detector_only=True" in message and "\n" not in message
    # the detector alone is exactly what a model without the GLIPv2 parts exports
    detector = export_official_state_dict(model, detector_only=True)
    plain = GLIP(get_config("glip-tiny"))
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith(("pretraining_heads.", "mask_head."))})
    reference = export_official_state_dict(plain)
    assert detector.keys() == reference.keys()
    torch.testing.assert_close(detector, reference, rtol=0, atol=0)
