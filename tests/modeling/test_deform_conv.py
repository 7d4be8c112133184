"""Our sampled deformable conv equals torchvision's deform_conv2d (values and gradients with respect to
input, offset, mask, weight and bias), for stride 1 and 2, taps that fall outside the map, maps of
width or height 1, offsets of the output's size and the official coarser-level layout (the leading
values of a larger offset/mask map), and any band size of the tiling."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from glip.modeling.deform_conv import deform_conv3x3, deform_conv3x3_sampled
from glip.modeling.dyhead import DeformConvNorm, DyHeadBlock, leading_slice


def _random(shape, generator, scale=1.0, positive=False):
    values = torch.rand(shape, generator=generator, dtype=torch.float64) if positive else \
        scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    return values.requires_grad_()


def _compare(x, offset_source, mask_source, weight, bias, stride, out_size, tile_elements):
    """Run both on the same leaves; the offset/mask given to the convs are `leading_slice` views of
    the sources when these are larger than the output (the official layout), else the sources."""
    offset = leading_slice(offset_source, *out_size)
    mask = leading_slice(mask_source, *out_size)
    ours = deform_conv3x3_sampled(x, offset, weight, bias, stride, mask, tile_elements=tile_elements)
    reference = deform_conv2d(x, offset, weight, bias, stride=stride, padding=1, mask=mask)
    torch.testing.assert_close(ours, reference, atol=1e-10, rtol=1e-10)
    leaves = [x, offset_source, mask_source, weight, bias]
    probe = torch.linspace(-1, 1, ours.numel(), dtype=ours.dtype).view_as(ours)
    grads = torch.autograd.grad((ours * probe).sum() + ours.square().sum(), leaves)
    expected = torch.autograd.grad((reference * probe).sum() + reference.square().sum(), leaves)
    for name, got, want in zip(["input", "offset", "mask", "weight", "bias"], grads, expected):
        torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-8, msg=f"gradient w.r.t. {name} differs")


@pytest.mark.parametrize("stride, size, tile_elements", [
    (1, (9, 13), 1 << 24), (2, (10, 7), 1 << 24), (1, (9, 13), 400), (2, (11, 8), 300),
    (1, (2, 3), 1 << 24), (1, (1, 5), 1 << 24), (2, (5, 1), 1 << 24)])
def test_sampled_matches_torchvision_with_offsets_of_the_output_size(stride, size, tile_elements):
    generator = torch.Generator().manual_seed(0)
    h, w = size
    out_size = ((h - 1) // stride + 1, (w - 1) // stride + 1)
    x = _random((2, 6, h, w), generator)
    offset = _random((2, 18, *out_size), generator, scale=3.0)  # many taps land across the border
    mask = _random((2, 9, *out_size), generator, positive=True)
    weight = _random((5, 6, 3, 3), generator)
    bias = _random((5,), generator)
    _compare(x, offset, mask, weight, bias, stride, out_size, tile_elements)


@pytest.mark.parametrize("tile_elements", [1 << 24, 500])
def test_sampled_matches_torchvision_with_the_official_coarser_level_layout(tile_elements):
    """The coarser-level conv reads the first 18*h*w values of the finer level's offset map."""
    generator = torch.Generator().manual_seed(1)
    x = _random((2, 4, 5, 7), generator)  # the coarser level
    offset = _random((2, 18, 10, 13), generator, scale=2.0)  # predicted on the finer level
    mask = _random((2, 9, 10, 13), generator, positive=True)
    weight = _random((3, 4, 3, 3), generator)
    bias = _random((3,), generator)
    _compare(x, offset, mask, weight, bias, 1, (5, 7), tile_elements)


def test_bands_of_one_row_give_the_single_band_result():
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 8, 6, generator=generator)
    offset = 2 * torch.randn(1, 18, 8, 6, generator=generator)
    mask = torch.rand(1, 9, 8, 6, generator=generator)
    weight, bias = torch.randn(4, 3, 3, 3, generator=generator), torch.randn(4, generator=generator)
    whole = deform_conv3x3_sampled(x, offset, weight, bias, 1, mask)
    rows = deform_conv3x3_sampled(x, offset, weight, bias, 1, mask, tile_elements=1)
    torch.testing.assert_close(rows, whole, atol=1e-6, rtol=1e-6)


def test_every_method_gives_the_same_block_output():
    torch.manual_seed(3)
    block = DyHeadBlock(channels=8, groups=2)
    torch.nn.init.normal_(block.offset_mask.weight, std=0.3)  # non-trivial offsets and masks
    levels = [torch.randn(1, 8, 12, 10), torch.randn(1, 8, 6, 5), torch.randn(1, 8, 3, 3), torch.randn(1, 8, 2, 2),
              torch.randn(1, 8, 1, 1)]
    outputs = {}
    for method in ["torchvision", "sampled", "auto"]:
        for module in block.modules():
            if isinstance(module, DeformConvNorm):
                module.method = method
        outputs[method] = block(levels)
    for method in ["sampled", "auto"]:
        for got, want in zip(outputs[method], outputs["torchvision"]):
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_unknown_method_is_refused():
    x, offset, mask = torch.zeros(1, 2, 3, 3), torch.zeros(1, 18, 3, 3), torch.ones(1, 9, 3, 3)
    with pytest.raises(ValueError, match="deformable conv method"):
        deform_conv3x3(x, offset, torch.zeros(2, 2, 3, 3), torch.zeros(2), 1, mask, method="cuda")
    with pytest.raises(ValueError, match="deformable conv method"):
        DeformConvNorm(8, stride=1, groups=2, method="fast")
