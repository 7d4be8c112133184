"""The language-aware mask head: shapes, phrase dependence, phrase features and pasting into the image."""

import pytest
import torch
from torchvision.ops import roi_align

from glip.config import GLIPConfig, MaskHeadConfig, glip_tiny
from glip.modeling.glip import GLIP
from glip.modeling.mask_head import LanguageAwareMaskHead, paste_masks, phrase_features

C, D = 8, 12


def _head(**overrides) -> LanguageAwareMaskHead:
    torch.manual_seed(0)
    config = MaskHeadConfig(enabled=True, channels=8, num_convs=2, **overrides)
    return LanguageAwareMaskHead(config, visual_dim=C, text_dim=D)


def _visual(batch: int = 2, size: int = 128) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    # P3..P7 of a size x size input: strides 8..128
    return [torch.randn(batch, C, max(size // s, 1), max(size // s, 1), generator=generator)
            for s in (8, 16, 32, 64, 128)]


def test_output_shapes_and_empty_image():
    head = _head()
    boxes = [torch.tensor([[4.0, 4.0, 60.0, 40.0], [0.0, 0.0, 128.0, 128.0], [50.0, 50.0, 52.0, 53.0]]),
             torch.zeros(0, 4)]
    phrases = [torch.randn(3, D), torch.zeros(0, D)]
    logits = head(_visual(), boxes, phrases, image_size=(128, 128))
    assert logits.shape == (3, 28, 28)
    assert torch.isfinite(logits).all()
    pooled = head.pool(_visual(), boxes, (128, 128))
    assert pooled.shape == (3, C, 14, 14)
    assert head.pixel_features(pooled).shape == (3, D, 28, 28)
    empty = head(_visual(), [torch.zeros(0, 4), torch.zeros(0, 4)], [torch.zeros(0, D)] * 2, (128, 128))
    assert empty.shape == (0, 28, 28)
    empty.sum().backward()  # the graph exists even without boxes
    assert head.log_scale.grad is not None


def test_mask_depends_on_the_phrase():
    head = _head()
    boxes = [torch.tensor([[8.0, 8.0, 100.0, 90.0]] * 2), torch.zeros(0, 4)]
    phrases = [torch.randn(2, D, generator=torch.Generator().manual_seed(3)), torch.zeros(0, D)]
    logits = head(_visual(), boxes, phrases, (128, 128))
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)
    # Same phrase (any length: it is normalised) -> same mask.
    same = head(_visual(), boxes, [torch.stack([phrases[0][0], 3 * phrases[0][0]]), torch.zeros(0, D)], (128, 128))
    torch.testing.assert_close(same[0], same[1])


def test_box_level_follows_fpn_rule():
    head = _head(num_levels=3)
    visual = _visual(batch=1, size=512)
    small, large = torch.tensor([[0.0, 0.0, 64.0, 64.0]]), torch.tensor([[0.0, 0.0, 448.0, 448.0]])
    # 64 px -> P3 (stride 8); 448 px -> level 5 (stride 32)
    for box, level, stride in ((small, 0, 8), (large, 2, 32)):
        expected = roi_align(visual[level], [box], 14, spatial_scale=1 / stride, sampling_ratio=2, aligned=True)
        torch.testing.assert_close(head.pool(visual, [box], (512, 512)), expected)


def test_bad_arguments_are_one_line_errors():
    head = _head()
    with pytest.raises(ValueError, match="boxes but 1 phrase"):
        head(_visual(batch=1), [torch.zeros(2, 4)], [torch.zeros(1, D)], (128, 128))
    with pytest.raises(ValueError, match="resolution must be 2 x"):
        LanguageAwareMaskHead(MaskHeadConfig(enabled=True, resolution=20), C, D)


def test_phrase_features_average_the_tokens():
    text = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    out = phrase_features(text, [[[1, 2], [4]], []])
    assert [o.shape for o in out] == [(2, 3), (0, 3)]
    torch.testing.assert_close(out[0][0], (text[0, 1] + text[0, 2]) / 2)
    torch.testing.assert_close(out[0][1], text[0, 4])
    with pytest.raises(ValueError, match="at least one token"):
        phrase_features(text, [[[]], []])
    with pytest.raises(ValueError, match="at least one token"):
        phrase_features(text, [[[5]], []])


def test_paste_puts_a_full_grid_exactly_on_the_box():
    full = torch.full((1, 28, 28), 10.0)
    mask = paste_masks(full, torch.tensor([[10.0, 20.0, 30.0, 45.0]]), height=60, width=50)
    expected = torch.zeros(1, 60, 50, dtype=torch.bool)
    expected[0, 20:45, 10:30] = True
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    # Fractional box: the pixels whose centres lie inside.
    mask = paste_masks(full, torch.tensor([[10.3, 20.6, 29.7, 44.4]]), height=60, width=50)
    expected = torch.zeros(1, 60, 50, dtype=torch.bool)
    expected[0, 21:44, 10:30] = True
    assert torch.equal(mask, expected)


def test_paste_follows_the_grid_and_clips():
    logits = torch.full((1, 4, 4), -10.0)
    logits[0, :, :2] = 10.0  # left half of the box
    mask = paste_masks(logits, torch.tensor([[-20.0, 0.0, 20.0, 8.0]]), height=10, width=10)
    expected = torch.zeros(1, 10, 10, dtype=torch.bool)  # left half is x < 0: outside the image
    assert torch.equal(mask, expected)
    logits[0] = logits[0].flip(1)  # right half: x in [0, 20) -> clipped to [0, 10)
    mask = paste_masks(logits, torch.tensor([[-20.0, 0.0, 20.0, 8.0]]), height=10, width=10)
    expected[0, 0:8, 0:10] = True
    assert torch.equal(mask, expected)


def test_paste_degenerate_outside_and_tiny_boxes():
    full = torch.full((5, 28, 28), 10.0)
    boxes = torch.tensor([[100.0, 100.0, 120.0, 120.0],  # outside
                          [-30.0, -30.0, -1.0, -1.0],  # outside
                          [5.0, 5.0, 5.0, 9.0],  # zero width
                          [7.2, 3.1, 7.4, 3.3],  # smaller than a pixel -> its centre pixel
                          [float("nan"), 0.0, 4.0, 4.0]])
    mask = paste_masks(full, boxes, height=12, width=16)
    assert mask.shape == (5, 12, 16)
    assert not mask[[0, 1, 2, 4]].any()
    assert mask[3].sum() == 1 and mask[3, 3, 7]
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), 12, 16).shape == (0, 12, 16)
    with pytest.raises(ValueError, match="boxes \\[N, 4\\]"):
        paste_masks(full, torch.zeros(4, 4), 12, 16)


def test_model_builds_the_head_only_when_enabled():
    assert GLIP(glip_tiny()).mask_head is None
    config = glip_tiny()
    assert "mask_head" not in config.to_dict()
    config.mask_head = MaskHeadConfig(enabled=True, channels=8)
    data = config.to_dict()
    assert data["mask_head"]["enabled"] is True
    assert GLIPConfig.from_dict(data).mask_head == config.mask_head
    model = GLIP(config)
    assert isinstance(model.mask_head, LanguageAwareMaskHead)
    assert model.mask_head.projection.out_channels == config.text.hidden_size


def test_autocast_features_give_logits():
    head = _head()
    visual = [level.bfloat16() for level in _visual(batch=1)]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # roi_align runs in float32 under autocast
        logits = head(visual, [torch.tensor([[1.0, 2.0, 60.0, 70.0], [0.0, 0.0, 128.0, 128.0]])],
                      [torch.randn(2, D)], (128, 128))
    assert logits.shape == (2, 28, 28) and torch.isfinite(logits.float()).all()
