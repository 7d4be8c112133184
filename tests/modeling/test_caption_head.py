"""The causal text side of captioning: a token never depends on later tokens, at every stage
(text encoder, text layer, fusion, the whole caption pass), while the image still reaches it."""

from __future__ import annotations

import pytest
import torch

from caption_model import caption_glip

IDS = torch.tensor([[101, 1037, 2417, 2732, 2682, 102, 0], [101, 2048, 3756, 102, 0, 0, 0]])
MASK = (IDS > 0).long()


def _changed_later(ids: torch.Tensor, position: int) -> torch.Tensor:
    other = ids.clone()
    other[:, position] = 7592  # another word at and only at `position`
    return other


@pytest.fixture(scope="module", params=["reassociated", "direct"])
def model(request):
    """The caption model with its fusion attention in either order (the causal mode works in both)."""
    glip = caption_glip()
    for block in glip.head.blocks:
        block.fusion.attn.order = request.param
    return glip


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64)


def test_text_encoder_causal_mode_ignores_later_tokens(model):
    with torch.no_grad():
        before = model.encode_text(IDS, MASK, causal=True).hidden
        after = model.encode_text(_changed_later(IDS, 3), MASK, causal=True).hidden
        bidirectional = model.encode_text(IDS, MASK).hidden
        bidirectional_after = model.encode_text(_changed_later(IDS, 3), MASK).hidden
    assert torch.equal(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3], after[:, 3])
    assert not torch.allclose(bidirectional[:, :3], bidirectional_after[:, :3])  # the default still looks ahead


def test_caption_pass_ignores_later_tokens_at_every_position(model, images):
    from glip.modeling.caption_head import caption_context, caption_logits

    with torch.no_grad():
        context = caption_context(model, model.encode_images(images))
        reference = caption_logits(model, context, IDS, MASK)
        for position in range(1, 4):
            changed = caption_logits(model, context, _changed_later(IDS, position), MASK)
            torch.testing.assert_close(changed[:, :position], reference[:, :position], rtol=0, atol=1e-5)
            assert (changed[:, position] - reference[:, position]).abs().max() > 1e-4


def test_caption_pass_reads_the_image(model, images):
    from glip.modeling.caption_head import caption_context, caption_text_features

    with torch.no_grad():
        one = caption_text_features(model, caption_context(model, model.encode_images(images)), IDS, MASK)
        two = caption_text_features(model, caption_context(model, model.encode_images(images.flip(-1))), IDS, MASK)
    assert (one[:, 0] - two[:, 0]).abs().max() > 1e-4  # even [CLS] sees the picture


def test_cached_visual_stream_equals_running_the_blocks_causally(model, images):
    """caption_context precomputes what the fusion blocks' causal visual output would be."""
    from glip.modeling.caption_head import caption_context, caption_text_features

    with torch.no_grad():
        features = model.encode_images(images)
        levels, text = list(features.levels), model.encode_text(IDS, MASK, causal=True).hidden
        for block in model.head.blocks:
            levels, text = block.fusion(levels, text, MASK, causal=True)
            text = block.text_layer(text, MASK, causal=True)
            levels = block.dyconv(levels)
        cached = caption_text_features(model, caption_context(model, features), IDS, MASK)
    torch.testing.assert_close(cached, text)


def test_causal_fusion_keeps_the_image_free_of_text(model, images):
    block = model.head.blocks[0]
    with torch.no_grad():
        levels = model.encode_images(images).levels
        text = model.encode_text(IDS, MASK).hidden
        fused_a, _ = block.fusion(levels, text, MASK, causal=True)
        fused_b, _ = block.fusion(levels, text.flip(1), MASK, causal=True)
        open_a, _ = block.fusion(levels, text, MASK)
        open_b, _ = block.fusion(levels, text.flip(1), MASK)
    assert all(torch.equal(a, b) for a, b in zip(fused_a, fused_b))
    assert not all(torch.allclose(a, b) for a, b in zip(open_a, open_b))


def test_head_shapes_tied_and_untied():
    from glip.modeling.caption_head import caption_context, caption_logits

    for tie in (True, False):
        model = caption_glip(tie=tie)
        with torch.no_grad():
            context = caption_context(model, model.encode_images(torch.zeros(2, 3, 64, 64)))
            assert caption_logits(model, context, IDS, MASK).shape == (2, 7, model.config.text.vocab_size)
        assert (model.caption_head.decoder is None) == tie


def test_caption_config_checks_and_round_trip():
    import dataclasses

    from glip.config import CaptionConfig, GLIPConfig, get_config
    from glip.modeling.glip import GLIP

    assert "caption" not in get_config("glip-tiny").to_dict()  # off: files unchanged
    config = dataclasses.replace(get_config("glip-tiny"), caption=CaptionConfig(enabled=True, max_tokens=12))
    assert GLIPConfig.from_dict(config.to_dict()).caption == config.caption
    with pytest.raises(ValueError, match="needs a model with fusion"):
        GLIP(dataclasses.replace(get_config("glip-tiny-nofusion"), caption=CaptionConfig(enabled=True)))
    with pytest.raises(ValueError, match="max_tokens must be within"):
        GLIP(dataclasses.replace(get_config("glip-tiny"), caption=CaptionConfig(enabled=True, max_tokens=255)))
    with pytest.raises(ValueError, match="no caption head"):
        from glip.modeling.caption_head import require_caption_model

        require_caption_model(GLIP(get_config("glip-tiny")))
