"""The two deformable-conv formulations agree (values and gradients), including stride 2 and
offsets that sample outside the map."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import deform_conv2d

from glip.modeling.dyhead import deform_conv3x3_sampled


@pytest.mark.parametrize("stride, size", [(1, (9, 13)), (2, (10, 7)), (1, (2, 3))])
def test_sampled_deform_conv_matches_torchvision(stride, size):
    generator = torch.Generator().manual_seed(0)
    h, w = size
    x = torch.randn(2, 6, h, w, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 6, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, generator=generator, dtype=torch.float64)
    out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
    offset = (3 * torch.randn(2, 18, out_h, out_w, generator=generator, dtype=torch.float64)).requires_grad_()
    mask = torch.rand(2, 9, out_h, out_w, generator=generator, dtype=torch.float64, requires_grad=True)
    ours = deform_conv3x3_sampled(x, offset, weight, bias, stride, mask)
    reference = deform_conv2d(x, offset, weight, bias, stride=stride, padding=1, mask=mask)
    torch.testing.assert_close(ours, reference, atol=1e-9, rtol=1e-9)
    grads = torch.autograd.grad(ours.square().sum(), [x, weight, mask])
    expected = torch.autograd.grad(reference.square().sum(), [x, weight, mask])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-8)
