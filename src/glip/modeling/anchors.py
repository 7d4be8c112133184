"""ATSS anchors: one square anchor per location and level, legacy "+1" pixel convention."""

from __future__ import annotations

import torch


def cell_anchor(size: int, stride: int) -> torch.Tensor:
    """The anchor template of a level: a size x size box centred at ((stride-1)/2, (stride-1)/2),
    with width = x2 - x1 + 1 = size. E.g. size 64, stride 8 -> [-28, -28, 35, 35]."""
    centre = (stride - 1) / 2.0
    half = (size - 1) / 2.0
    return torch.tensor([[centre - half, centre - half, centre + half, centre + half]], dtype=torch.float32)


def grid_anchors(size: int, stride: int, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Anchors of one level, [H*W, 4] xyxy, rows ordered y-major then x (row = y * W + x)."""
    shifts_x = torch.arange(0, width * stride, step=stride, dtype=torch.float32, device=device)
    shifts_y = torch.arange(0, height * stride, step=stride, dtype=torch.float32, device=device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 4)  # [H*W, 4]
    return shifts + cell_anchor(size, stride).to(device)


def level_anchors(sizes: tuple[int, ...], strides: tuple[int, ...], shapes: list[tuple[int, int]],
                  device: torch.device | None = None) -> list[torch.Tensor]:
    """Anchors for every level given the feature-map shapes [(H_l, W_l)]."""
    return [grid_anchors(size, stride, h, w, device) for size, stride, (h, w) in zip(sizes, strides, shapes)]
