"""Modulated 3x3 deformable convolution (padding 1, stride 1 or 2): torchvision's op or our sampling.

Both compute, for output position (y, x) and tap k = 3*i + j (offsets in (dy, dx) pairs, as the
official DCN and torchvision lay them out):

    out[o, y, x] = bias[o] + sum_{c,k} weight[o, c, i, j] * mask[k, y, x]
                   * bilinear(x_in[c], y*s - 1 + i + offset[2k, y, x], x*s - 1 + j + offset[2k+1, y, x])

with zeros outside the map. "sampled" gathers the nine taps of a band of output rows with one
``grid_sample`` and contracts them with the weight in one matrix product; bands are sized so the
sampled taps of one band hold at most ``tile_elements`` values, which bounds the workspace of an
inference pass (under autograd every band's taps are kept for the backward pass, as any
formulation that does not recompute them must). "auto" picks the faster of the two for the device,
as measured by ``benchmarks/fused_head.py``. "sampled" is also the ONNX export's formulation
(``GridSample`` + MatMul; `glip.export.tracing`): torchvision's op has no ONNX symbolic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

DEFORM_CONV_METHODS = ("auto", "torchvision", "sampled")
DEFAULT_TILE_ELEMENTS = 1 << 24  # sampled taps per band: 16M values, 64 MiB in float32

_TAP_Y = (0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0)
_TAP_X = (0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0)


def _band_grid(offset: torch.Tensor, first_row: int, in_size: tuple[int, int], stride: int) -> torch.Tensor:
    """grid_sample coordinates (align_corners=False, exact for any map size, 1 included) of the nine
    taps of the output rows in `offset` ([B, 18, rows, Wo], rows starting at `first_row`)."""
    b, _, rows, out_w = offset.shape
    in_h, in_w = in_size
    options = dict(dtype=offset.dtype, device=offset.device)
    row = torch.arange(first_row, first_row + rows, **options) * stride - 1
    col = torch.arange(out_w, **options) * stride - 1
    shifts = offset.view(b, 9, 2, rows, out_w)  # (dy, dx) per tap
    y = row[:, None] + torch.tensor(_TAP_Y, **options)[:, None, None] + shifts[:, :, 0]  # [B, 9, rows, Wo]
    x = col + torch.tensor(_TAP_X, **options)[:, None, None] + shifts[:, :, 1]
    grid = torch.stack([(2 * x + 1) / in_w - 1, (2 * y + 1) / in_h - 1], dim=-1)  # [B, 9, rows, Wo, 2]
    return grid.view(b, 9 * rows, out_w, 2)


def deform_conv3x3_sampled(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                           stride: int, mask: torch.Tensor,
                           tile_elements: int = DEFAULT_TILE_ELEMENTS) -> torch.Tensor:
    """Modulated 3x3 deformable conv by bilinear sampling + one matrix product per band of rows.

    x: [B, C, H, W]; offset: [B, 18, Ho, Wo]; mask: [B, 9, Ho, Wo]; weight: [O, C, 3, 3]; bias: [O]
    -> [B, O, Ho, Wo]. Same result as ``torchvision.ops.deform_conv2d(..., padding=1)`` up to rounding.
    """
    b, c, h, w = x.shape
    out_h, out_w = offset.shape[-2:]
    kernel = weight.reshape(weight.shape[0], c * 9)  # [O, C*9], column c*9 + k
    rows_per_band = max(1, tile_elements // max(1, b * c * 9 * out_w))
    bands = []
    for start in range(0, out_h, rows_per_band):
        stop = min(out_h, start + rows_per_band)
        grid = _band_grid(offset[:, :, start:stop], start, (h, w), stride).to(x.dtype)
        taps = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        positions = (stop - start) * out_w
        taps = taps.view(b, c, 9, positions) * mask[:, :, start:stop].reshape(b, 1, 9, positions)
        band = torch.matmul(kernel, taps.view(b, c * 9, positions)) + bias[:, None]  # [B, O, rows*Wo]
        bands.append(band.view(b, -1, stop - start, out_w))
    return bands[0] if len(bands) == 1 else torch.cat(bands, dim=2)


def _torchvision(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 stride: int, mask: torch.Tensor) -> torch.Tensor:
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        # torchvision's op has no CPU autocast rule: run it in float32.
        with torch.autocast("cpu", enabled=False):
            return deform_conv2d(x.float(), offset.float(), weight.float(), bias.float(), stride=stride,
                                 padding=1, mask=mask.float())
    return deform_conv2d(x, offset, weight, bias, stride=stride, padding=1, mask=mask)


def choose_method(x: torch.Tensor) -> str:
    """The faster formulation for this input's device (see the module docstring)."""
    return "sampled" if x.device.type == "cpu" else "torchvision"


def deform_conv3x3(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   stride: int, mask: torch.Tensor, method: str = "auto") -> torch.Tensor:
    """Modulated 3x3 deformable conv with padding 1 by `method` ("auto", "torchvision", "sampled").

    Shapes as in `deform_conv3x3_sampled`; offset and mask must have the output's size (an official
    checkpoint's coarser-level quirk is resolved by the caller, `glip.modeling.dyhead.leading_slice`).
    """
    if method not in DEFORM_CONV_METHODS:
        raise ValueError(f"deformable conv method {method!r} is not one of {DEFORM_CONV_METHODS}")
    if method == "auto":
        method = choose_method(x)
    if method == "sampled":
        return deform_conv3x3_sampled(x, offset, weight, bias, stride, mask)
    return _torchvision(x, offset, weight, bias, stride, mask)
