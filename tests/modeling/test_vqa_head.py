"""The fused features of GLIP and the VQA answer head on them."""

from __future__ import annotations

import pytest
import torch

from glip.config import get_config
from glip.modeling.glip import GLIP
from glip.modeling.vqa_head import VqaHead, VqaHeadConfig


def _model() -> GLIP:
    torch.manual_seed(0)
    return GLIP(get_config("glip-tiny")).eval()


def _inputs(batch: int = 2, length: int = 7):
    images = torch.randn(batch, 3, 64, 64)
    ids = torch.randint(1000, 2000, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    return images, ids, mask


def test_fused_features_are_those_the_detection_head_predicts_from():
    model = _model()
    images, ids, mask = _inputs()
    with torch.no_grad():
        fused = model.fused_features(images, ids, mask)
        output = model(images, ids, mask)
    assert fused.text.shape == (2, 7, model.config.text.hidden_size)
    assert len(fused.visual) == 5 and fused.visual[0].shape[:2] == (2, model.config.head.channels)
    assert torch.equal(fused.text, output.head.text)
    for mine, theirs in zip(fused.visual, output.head.visual):
        assert torch.equal(mine, theirs)
    assert torch.equal(fused.text_mask, mask)


def test_one_text_is_shared_by_every_image_and_image_features_are_reused():
    model = _model()
    images, ids, mask = _inputs()
    with torch.no_grad():
        shared = model.fused_features(images, ids[:1], mask[:1])
        again = model.fused_features(None, ids[:1], mask[:1], image_features=shared.image)
        expanded = model.fused_features(images, ids[:1].expand(2, -1), mask[:1].expand(2, -1))
    assert shared.text.shape[0] == 2
    assert torch.equal(shared.text, again.text)
    assert torch.allclose(shared.text, expanded.text, atol=1e-6)


def test_head_gives_one_logit_per_answer_and_ignores_padding():
    model = _model()
    head = VqaHead(VqaHeadConfig(num_answers=11, hidden_dim=8), model.config.text.hidden_size,
                   model.config.head.channels).eval()
    images, ids, mask = _inputs(batch=1, length=5)
    padded_ids = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short = model.fused_features(images, ids, mask)
        long = model.fused_features(images, padded_ids, padded_mask)
        a = head(short.text, short.text_mask, short.visual)
        b = head(long.text, long.text_mask, long.visual)
    assert a.logits.shape == (1, 11) and a.pooled.shape == (1, 16)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert torch.all(b.text_weights[:, 5:] == 0) and torch.allclose(b.text_weights.sum(-1), torch.ones(1))


def test_head_without_visual_reads_the_question_only_and_trains():
    model = _model()
    head = VqaHead(VqaHeadConfig(num_answers=3, hidden_dim=8, use_visual=False), model.config.text.hidden_size,
                   model.config.head.channels)
    assert head.visual_projection is None
    images, ids, mask = _inputs()
    fused = model.fused_features(images, ids, mask)
    head(fused.text, fused.text_mask, fused.visual).logits.sum().backward()
    assert head.token_score.weight.grad is not None
    assert model.backbone.patch_embed.proj.weight.grad is not None  # the gradient reaches the image side


def test_config_round_trips_and_refuses_unknown_settings():
    config = VqaHeadConfig(num_answers=4, hidden_dim=8)
    assert VqaHeadConfig.from_dict(config.to_dict()) == config
    try:
        VqaHeadConfig.from_dict({"num_answers": 4, "width": 3})
    except ValueError as error:
        assert "width" in str(error)
    else:
        raise AssertionError("an unknown setting was accepted")


def test_question_pooling_with_even_attention_is_the_mean_pooling():
    torch.manual_seed(1)
    attending = VqaHead(VqaHeadConfig(num_answers=5, hidden_dim=8), text_dim=6, visual_dim=4)
    averaging = VqaHead(VqaHeadConfig(num_answers=5, hidden_dim=8, visual_pooling="mean"), text_dim=6, visual_dim=4)
    assert averaging.visual_key is None
    state = {k: v for k, v in attending.state_dict().items() if not k.startswith("visual_key.")}
    averaging.load_state_dict(state)
    with torch.no_grad():
        attending.visual_key.weight.zero_()
        attending.visual_key.bias.zero_()  # every location scores 0: an even softmax
    text, mask = torch.randn(2, 3, 6), torch.ones(2, 3)
    visual = [torch.randn(2, 4, 3, 3), torch.randn(2, 4, 2, 2)]
    attending.eval(), averaging.eval()
    assert torch.allclose(attending(text, mask, visual).logits, averaging(text, mask, visual).logits, atol=1e-6)


def test_question_pooling_reads_the_location_the_question_points_at():
    head = VqaHead(VqaHeadConfig(num_answers=2, hidden_dim=4, attention_heads=2), text_dim=4, visual_dim=4)
    with torch.no_grad():
        head.visual_key.weight.copy_(torch.eye(4) * 50)
        head.visual_key.bias.zero_()
        head.visual_projection.weight.copy_(torch.eye(4))
        head.visual_projection.bias.zero_()
    question = torch.tensor([[1.0, 0.0, 1.0, 0.0]])  # each head asks for feature 0 of its half
    locations = torch.tensor([[[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    assert torch.allclose(head._attend(question, locations), locations[:, 1], atol=1e-4)


def test_head_files_written_before_the_pooling_setting_read_as_mean_pooling():
    assert VqaHeadConfig.from_dict({"num_answers": 4, "hidden_dim": 8}).visual_pooling == "mean"
    assert VqaHeadConfig.from_dict(VqaHeadConfig(4, 8).to_dict()).visual_pooling == "question"
    for bad, message in (({"visual_pooling": "max"}, "visual_pooling must be one of question, mean"),
                         ({"attention_heads": 3}, "attention_heads \\(3\\) must divide hidden_dim \\(8\\)")):
        with pytest.raises(ValueError, match=message):
            VqaHead(VqaHeadConfig(num_answers=2, hidden_dim=8, **bad), text_dim=4, visual_dim=4)
