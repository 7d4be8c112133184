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
        a = head(short.text, short.text_mask, short.visual, short.image.levels)
        b = head(long.text, long.text_mask, long.visual, long.image.levels)
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
    attending = VqaHead(VqaHeadConfig(num_answers=5, hidden_dim=8, visual_features="fused"), text_dim=6, visual_dim=4)
    averaging = VqaHead(VqaHeadConfig(num_answers=5, hidden_dim=8, visual_pooling="mean", visual_features="fused"),
                        text_dim=6, visual_dim=4)
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
    head = VqaHead(VqaHeadConfig(num_answers=2, hidden_dim=4, attention_heads=2, visual_features="fused"),
                   text_dim=4, visual_dim=4)
    with torch.no_grad():
        head.visual_key.weight.copy_(torch.eye(4) * 50)
        head.visual_key.bias.zero_()
        head.visual_projection.weight.copy_(torch.eye(4))
        head.visual_projection.bias.zero_()
    question = torch.tensor([[1.0, 0.0, 1.0, 0.0]])  # each head asks for feature 0 of its half
    locations = torch.tensor([[[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    assert torch.allclose(head._attend(question, locations), locations[:, 1], atol=1e-4)


def test_head_files_written_before_the_pooling_settings_read_as_mean_pooling_of_the_fused_features():
    old = VqaHeadConfig.from_dict({"num_answers": 4, "hidden_dim": 8})
    assert (old.visual_pooling, old.visual_features) == ("mean", "fused")
    new = VqaHeadConfig.from_dict(VqaHeadConfig(4, 8).to_dict())
    assert (new.visual_pooling, new.visual_features) == ("question", "fused")
    for bad, message in (({"visual_pooling": "max"}, "visual_pooling must be one of question, mean"),
                         ({"visual_features": "fpn"}, "visual_features must be one of fused, fpn\\+fused"),
                         ({"attention_heads": 3}, "attention_heads \\(3\\) must divide hidden_dim \\(8\\)")):
        with pytest.raises(ValueError, match=message):
            VqaHead(VqaHeadConfig(num_answers=2, hidden_dim=8, **bad), text_dim=4, visual_dim=4)


@pytest.mark.parametrize("pooling", ["question", "mean"])
def test_fpn_and_fused_features_sit_side_by_side_at_each_location(pooling):
    """With the weights on its FPN half zero, a head reading both gives exactly the head that reads
    the fused features alone with the other half's weights: the FPN channels come first, the fused
    ones after, location by location."""
    torch.manual_seed(2)
    both = VqaHead(VqaHeadConfig(num_answers=5, hidden_dim=8, visual_pooling=pooling, visual_features="fpn+fused"),
                   text_dim=6, visual_dim=4).eval()
    fused_only = VqaHead(VqaHeadConfig(num_answers=5, hidden_dim=8, visual_pooling=pooling, visual_features="fused"),
                         text_dim=6, visual_dim=4).eval()
    assert both.reads_fpn and not fused_only.reads_fpn
    with torch.no_grad():
        for layer in (both.visual_projection, both.visual_key):
            if layer is not None:
                layer.weight[:, :4] = 0  # the FPN half
        fused_only.load_state_dict({k: (v[:, 4:] if k in ("visual_projection.weight", "visual_key.weight") else v)
                                    for k, v in both.state_dict().items() if not k.startswith("fpn_norm.")})
    text, mask = torch.randn(2, 3, 6), torch.ones(2, 3)
    fused = [torch.randn(2, 4, 3, 3), torch.randn(2, 4, 2, 2)]
    fpn = [torch.randn(2, 4, 3, 3), torch.randn(2, 4, 2, 2)]
    with torch.no_grad():
        reference = fused_only(text, mask, fused).logits
        assert torch.allclose(both(text, mask, fused, fpn).logits, reference, atol=1e-6)
        other_fpn = [level * 3 + 1 for level in fpn]
        assert torch.allclose(both(text, mask, fused, other_fpn).logits, reference, atol=1e-6)
        other_fused = [level * 3 + 1 for level in fused]
        assert not torch.allclose(both(text, mask, other_fused, fpn).logits, reference, atol=1e-3)
    with pytest.raises(ValueError, match="reads the FPN levels beside the fused ones"):
        both(text, mask, fused)


def test_fpn_levels_are_normalised_location_by_location():
    """FPN values are far larger than fused ones (glip-nano: std 3-65 by level against about 1):
    each location's FPN channels reach the projections layer-normalised, so scaling a level changes
    nothing."""
    torch.manual_seed(3)
    head = VqaHead(VqaHeadConfig(num_answers=3, hidden_dim=8, visual_features="fpn+fused"), text_dim=6,
                   visual_dim=4).eval()
    level = torch.randn(2, 4, 3, 3) * 60 + 5
    normalised = head._normalise(level)
    assert torch.allclose(normalised.mean(dim=1), torch.zeros(2, 3, 3), atol=1e-5)
    assert torch.allclose(normalised.var(dim=1, unbiased=False), torch.ones(2, 3, 3), atol=1e-3)
    text, mask, fused = torch.randn(2, 3, 6), torch.ones(2, 3), [torch.randn(2, 4, 3, 3)]
    with torch.no_grad():
        assert torch.allclose(head(text, mask, fused, [level]).logits, head(text, mask, fused, [level * 10]).logits,
                              atol=1e-5)
