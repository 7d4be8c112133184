"""ATSS box coding: centre/size deltas relative to anchors, weights (10, 10, 5, 5), "+1" widths."""

from __future__ import annotations

import math

import torch


class BoxCoder:
    def __init__(self, weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0),
                 clip: float = math.log(1000.0 / 16)) -> None:
        self.weights = weights
        self.clip = clip  # largest dw/dh before exp

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """boxes, anchors: [N, 4] xyxy -> regression targets [N, 4] (dx, dy, dw, dh)."""
        wx, wy, ww, wh = self.weights
        anchor_w = anchors[:, 2] - anchors[:, 0] + 1
        anchor_h = anchors[:, 3] - anchors[:, 1] + 1
        anchor_cx = (anchors[:, 2] + anchors[:, 0]) / 2
        anchor_cy = (anchors[:, 3] + anchors[:, 1]) / 2
        box_w = boxes[:, 2] - boxes[:, 0] + 1
        box_h = boxes[:, 3] - boxes[:, 1] + 1
        box_cx = (boxes[:, 2] + boxes[:, 0]) / 2
        box_cy = (boxes[:, 3] + boxes[:, 1]) / 2
        return torch.stack([
            wx * (box_cx - anchor_cx) / anchor_w,
            wy * (box_cy - anchor_cy) / anchor_h,
            ww * torch.log(box_w / anchor_w),
            wh * torch.log(box_h / anchor_h),
        ], dim=1)

    def decode(self, deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """deltas: [N, 4], anchors: [N, 4] xyxy -> boxes [N, 4] xyxy (x2 = cx + (w - 1) / 2)."""
        anchors = anchors.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        anchor_w = anchors[:, 2] - anchors[:, 0] + 1
        anchor_h = anchors[:, 3] - anchors[:, 1] + 1
        anchor_cx = (anchors[:, 2] + anchors[:, 0]) / 2
        anchor_cy = (anchors[:, 3] + anchors[:, 1]) / 2
        dx = deltas[:, 0] / wx
        dy = deltas[:, 1] / wy
        dw = (deltas[:, 2] / ww).clamp(max=self.clip)
        dh = (deltas[:, 3] / wh).clamp(max=self.clip)
        cx = dx * anchor_w + anchor_cx
        cy = dy * anchor_h + anchor_cy
        w = torch.exp(dw) * anchor_w
        h = torch.exp(dh) * anchor_h
        return torch.stack([cx - 0.5 * (w - 1), cy - 0.5 * (h - 1), cx + 0.5 * (w - 1), cy + 0.5 * (h - 1)], dim=1)
