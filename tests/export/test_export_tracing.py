"""The export's deformable conv (gathered bilinear taps + matmul) against torchvision's op."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from glip.export.deform_conv import SampledDeformConvNorm, sampled_deform_conv3x3, sampled_deform_convs
from glip.modeling.dyhead import DeformConvNorm, DyHeadBlock


@pytest.mark.parametrize("stride, size", [(1, (5, 7)), (2, (6, 9)), (1, (1, 1)), (1, (1, 4))])
def test_equals_torchvision(stride, size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size)
    out_h, out_w = (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1
    offset = torch.randn(2, 18, out_h, out_w) * 2.5  # taps inside, across and beyond the border
    mask = torch.rand(2, 9, out_h, out_w)
    weight, bias = torch.randn(4, 3, 3, 3), torch.randn(4)
    expected = deform_conv2d(x, offset, weight, bias, stride=stride, padding=1, mask=mask)
    found = sampled_deform_conv3x3(x, offset, mask, weight, bias, stride)
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)


def test_context_swaps_and_restores_every_conv():
    block = DyHeadBlock(8, 2)
    originals = [block.same_level, block.from_finer, block.from_coarser]
    with sampled_deform_convs(block) as count:
        assert count == 3
        assert all(isinstance(m, SampledDeformConvNorm) for m in (block.same_level, block.from_finer,
                                                                  block.from_coarser))
        assert block.same_level.conv is originals[0].conv  # the weights are shared, not copied
    assert [block.same_level, block.from_finer, block.from_coarser] == originals
    assert not any(isinstance(m, SampledDeformConvNorm) for m in block.modules())
    assert all(isinstance(m, DeformConvNorm) for m in originals)


@pytest.mark.parametrize("size_in, size_out", [((80, 80), (3, 3)), ((13, 20), (5, 7)), ((8, 8), (4, 4))])
def test_matmul_adaptive_pooling_equals_torch(size_in, size_out):
    import torch.nn.functional as F

    from glip.export.tracing import matmul_adaptive_avg_pool2d, matmul_adaptive_pooling

    x = torch.randn(2, 3, *size_in)
    expected = F.adaptive_avg_pool2d(x, size_out)
    torch.testing.assert_close(matmul_adaptive_avg_pool2d(x, size_out), expected, atol=1e-6, rtol=1e-5)
    with matmul_adaptive_pooling():
        assert F.adaptive_avg_pool2d is matmul_adaptive_avg_pool2d
    assert F.adaptive_avg_pool2d is not matmul_adaptive_avg_pool2d
