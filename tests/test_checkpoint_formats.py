"""Our checkpoint format: float16 storage and leaving out an unchanged pretrained text encoder."""

from __future__ import annotations

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
