"""Putting a model in traceable form: the deformable convs' method, adaptive pooling as matmuls."""

from __future__ import annotations

import pytest
import torch

from glip.export.tracing import sampled_deform_convs
from glip.modeling.dyhead import DeformConvNorm, DyHeadBlock


def _methods(block):
    return {name: module.method for name, module in block.named_modules() if isinstance(module, DeformConvNorm)}


def test_context_sets_sampled_and_restores_every_method():
    block = DyHeadBlock(8, 2)
    block.from_finer.method = "torchvision"
    with sampled_deform_convs(block) as count:
        assert count == 3
        assert set(_methods(block).values()) == {"sampled"}
    assert _methods(block) == {"from_coarser": "auto", "same_level": "auto", "from_finer": "torchvision"}


def test_context_restores_the_methods_on_error():
    block = DyHeadBlock(8, 2)
    with pytest.raises(RuntimeError, match="inside"):
        with sampled_deform_convs(block):
            raise RuntimeError("inside")
    assert set(_methods(block).values()) == {"auto"}


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
