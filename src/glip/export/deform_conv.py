"""A modulated 3x3 deformable convolution made of plain tensor ops, for ONNX export.

torchvision registers no ONNX symbolic for ``deform_conv2d`` (torchvision 0.29), so torch.onnx
cannot export it, and onnxruntime runs ONNX's ``DeformConv`` (opset 19) only since 2026
(microsoft/onnxruntime#27393; 1.18 and 1.19 refuse it). This formulation samples the 9 taps by
bilinear interpolation (four gathered corners, zero outside the map, as torchvision's kernel does)
and multiplies the sampled columns with the weights: only Gather, arithmetic and MatMul, which
every ONNX runtime has.

It is used for export only, selected by `sampled_deform_convs`, which swaps the DyHead's
deformable convs for this one while a block of code runs and puts the originals back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from glip.modeling.dyhead import DeformConvNorm

# Tap k = 3 * i + j of a 3x3 kernel sits at row i, column j.
_TAP_ROWS = (0, 0, 0, 1, 1, 1, 2, 2, 2)
_TAP_COLS = (0, 1, 2, 0, 1, 2, 0, 1, 2)


def _bilinear_taps(x: torch.Tensor, y: torch.Tensor, x_pos: torch.Tensor) -> torch.Tensor:
    """Sample x [B, C, H, W] at fractional positions y, x_pos [B, N] -> [B, C, N]; zero outside."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)  # [B, C, H*W]
    y0, x0 = torch.floor(y), torch.floor(x_pos)
    out = x.new_zeros(b, c, y.shape[1])
    for dy in (0, 1):
        for dx in (0, 1):
            cy, cx = y0 + dy, x0 + dx  # [B, N] corner coordinates
            weight = (1 - (y - cy).abs()) * (1 - (x_pos - cx).abs())  # [B, N] bilinear weight
            inside = (cy >= 0) & (cy <= h - 1) & (cx >= 0) & (cx <= w - 1)
            index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long()  # [B, N]
            values = flat.gather(2, index[:, None, :].expand(b, c, index.shape[1]))  # [B, C, N]
            out = out + values * (weight * inside.to(x.dtype))[:, None, :]
    return out


def sampled_deform_conv3x3(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                           bias: torch.Tensor, stride: int) -> torch.Tensor:
    """Modulated 3x3 deformable conv, padding 1, as torchvision's ``deform_conv2d`` computes it.

    Args:
        x: [B, C, H, W] input.
        offset: [B, 18, Ho, Wo], (dy, dx) per tap: tap k of output (r, s) samples x at
            (r * stride - 1 + i + offset[2k], s * stride - 1 + j + offset[2k + 1]).
        mask: [B, 9, Ho, Wo] modulation of each tap.
        weight: [O, C, 3, 3]; bias: [O].
        stride: the conv's stride.

    Returns:
        [B, O, Ho, Wo].
    """
    b, c = x.shape[:2]
    out_h, out_w = offset.shape[-2:]
    rows = torch.arange(out_h, dtype=x.dtype, device=x.device) * stride - 1  # [Ho]
    cols = torch.arange(out_w, dtype=x.dtype, device=x.device) * stride - 1  # [Wo]
    tap_rows = torch.tensor(_TAP_ROWS, dtype=x.dtype, device=x.device)  # [9]
    tap_cols = torch.tensor(_TAP_COLS, dtype=x.dtype, device=x.device)  # [9]
    shifts = offset.reshape(b, 9, 2, out_h, out_w)  # [B, 9, (dy, dx), Ho, Wo]
    y = rows[None, None, :, None] + tap_rows[None, :, None, None] + shifts[:, :, 0]  # [B, 9, Ho, Wo]
    x_pos = cols[None, None, None, :] + tap_cols[None, :, None, None] + shifts[:, :, 1]  # [B, 9, Ho, Wo]
    sampled = _bilinear_taps(x, y.reshape(b, -1), x_pos.reshape(b, -1))  # [B, C, 9*Ho*Wo]
    sampled = sampled.reshape(b, c, 9, out_h * out_w) * mask.reshape(b, 1, 9, out_h * out_w)  # [B, C, 9, HWo]
    columns = sampled.reshape(b, c * 9, out_h * out_w)  # [B, C*9, HWo], (channel, tap) as in weight
    out = torch.matmul(weight.reshape(weight.shape[0], c * 9), columns)  # [B, O, HWo]
    return out.reshape(b, -1, out_h, out_w) + bias[None, :, None, None]


class SampledDeformConvNorm(nn.Module):
    """Stands in for a `DeformConvNorm` (same conv weights and GroupNorm, shared, not copied)."""

    def __init__(self, original: DeformConvNorm) -> None:
        super().__init__()
        self.conv = original.conv
        self.norm = original.norm
        self.stride = original.stride

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W]; offset [B, 18, Ho, Wo]; mask [B, 9, Ho, Wo] -> [B, C, Ho, Wo]."""
        out = sampled_deform_conv3x3(x, offset, mask, self.conv.weight, self.conv.bias, self.stride)
        return self.norm(out)


@contextmanager
def sampled_deform_convs(model: nn.Module) -> Iterator[int]:
    """Every `DeformConvNorm` of ``model`` replaced by a `SampledDeformConvNorm` for the duration.

    Yields the number of convs replaced; the originals are back in place afterwards, even on error.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, DeformConvNorm):
                swapped.append((parent, name, child))
    try:
        for parent, name, child in swapped:
            setattr(parent, name, SampledDeformConvNorm(child))
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
