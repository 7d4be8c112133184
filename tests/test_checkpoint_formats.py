"""Our checkpoint format: float16 storage and leaving out an unchanged pretrained text encoder."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from glip.checkpoint import load_glip, save_glip
from glip.config import get_config
from glip.modeling.glip import GLIP


def test_float16_storage_round_trips_to_float32(tmp_path):
    torch.manual_seed(0)
    model = GLIP(get_config("glip-tiny"))
    path = save_glip(model, tmp_path / "m.safetensors", dtype=torch.float16)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.get_tensor("head.bias_lang").dtype == torch.float16
    loaded = load_glip(path)
    for key, value in model.state_dict().items():
        restored = loaded.state_dict()[key]
        assert restored.dtype == value.dtype
        torch.testing.assert_close(restored, value, atol=2e-3, rtol=1e-3)


def test_unchanged_pretrained_text_encoder_is_left_out_and_restored(tmp_path):
    model = GLIP(get_config("glip-nano"))
    path = save_glip(model, tmp_path / "nano.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert not any(k.startswith("text_encoder.") for k in handle.keys())
        assert handle.metadata()["text_encoder"] == "pretrained:minilm"
    loaded = load_glip(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # A fine-tuned text encoder is kept in the file.
    with torch.no_grad():
        model.text_encoder.bert.embeddings.word_embeddings.weight[0, 0] += 1.0
    path = save_glip(model, tmp_path / "tuned.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        assert any(k.startswith("text_encoder.") for k in handle.keys())


def test_saved_files_are_readable_by_everyone_the_umask_allows(tmp_path):
    import os
    import stat

    model = GLIP(get_config("glip-tiny"))
    previous = os.umask(0o022)
    try:
        path = save_glip(model, tmp_path / "m.safetensors")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert stat.S_IMODE(path.with_suffix(".json").stat().st_mode) == 0o644
        os.umask(0o077)
        path = save_glip(model, tmp_path / "private.safetensors")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors", "private.json",
                                                         "private.safetensors"]  # no temporary file left


class _NotATensor:
    pass


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file (0 bytes)"),
    (b"not a checkpoint", "its bytes are not a PyTorch pickle or archive"),
    ("truncated", "truncated or damaged"),
    ("object", "holds Python objects besides tensors"),
])
def test_unreadable_pth_gets_one_clean_line(tmp_path, content, reason):
    from glip.checkpoint import CheckpointError, read_official_state_dict

    path = tmp_path / "bad.pth"
    if content == "truncated":
        torch.save({"model": {"a": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif content == "object":
        torch.save({"model": {"a": torch.zeros(1)}, "extra": _NotATensor()}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_official_state_dict(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message and "weights_only" not in message and "\x1b" not in message
    assert message.endswith((")", "again"))  # a whole sentence, not cut off


def test_config_name_checks_the_file_and_keeps_its_settings(tmp_path):
    from glip.checkpoint import CheckpointError

    config = get_config("glip-tiny")
    config.input.min_size = 224  # a setting the preset does not have
    path = save_glip(GLIP(config), tmp_path / "m.safetensors")
    assert load_glip(path, "glip-tiny").config.input.min_size == 224
    with pytest.raises(CheckpointError, match="holds a 'glip-tiny' model but config 'glip-tiny-nofusion'"):
        load_glip(path, "glip-tiny-nofusion")
