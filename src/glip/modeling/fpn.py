"""Feature pyramid network: P3-P5 from the backbone stages, P6/P7 from P5 (strides 8..128)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """Lateral 1x1 + output 3x3 convs, nearest top-down upsampling; P6 = stride-2 conv on the FPN's
    P5 output (not on the backbone stage), P7 = stride-2 conv on relu(P6). No norm, no ReLU elsewhere."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.p6 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        for conv in [*self.lateral, *self.output, self.p6, self.p7]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, stages: list[torch.Tensor]) -> list[torch.Tensor]:
        """stages: finest first, [B, C_i, H_i, W_i] -> [P3, P4, P5, P6, P7], each [B, out, H_l, W_l]."""
        top_down = self.lateral[-1](stages[-1])
        outputs = [self.output[-1](top_down)]
        for index in range(len(stages) - 2, -1, -1):
            lateral = self.lateral[index](stages[index])
            upsampled = F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            top_down = lateral + upsampled
            outputs.insert(0, self.output[index](top_down))
        p6 = self.p6(outputs[-1])
        p7 = self.p7(F.relu(p6))
        return [*outputs, p6, p7]
