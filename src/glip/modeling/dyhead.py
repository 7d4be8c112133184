"""DyHead block: scale-aware attention over three modulated deformable convs, then DyReLU.

For level l the block convolves P_l (stride 1), P_{l-1} (stride 2) and P_{l+1} (stride 1, then
bilinear upsampling with align_corners=True), all with the offsets and mask predicted on P_l.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glip.modeling.deform_conv import DEFORM_CONV_METHODS, deform_conv3x3


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0) / 6.0


class DeformConvNorm(nn.Module):
    """3x3 modulated deformable conv + GroupNorm. `method`: "auto" (the faster formulation for the
    device), "torchvision" or "sampled" (`glip.modeling.deform_conv`); all give the same result."""

    def __init__(self, channels: int, stride: int, groups: int, method: str = "auto") -> None:
        super().__init__()
        if method not in DEFORM_CONV_METHODS:
            raise ValueError(f"deformable conv method {method!r} is not one of {DEFORM_CONV_METHODS}")
        self.stride = stride
        self.method = method
        self.conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=1)  # holds weight/bias
        self.norm = nn.GroupNorm(groups, channels)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W]; offset [B, 18, Ho, Wo] (dy, dx per tap); mask [B, 9, Ho, Wo]."""
        out = deform_conv3x3(x, offset, self.conv.weight, self.conv.bias, self.stride, mask, self.method)
        return self.norm(out)


def leading_slice(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The first C*height*width values of each image's buffer, viewed as [B, C, height, width].

    This is how the official deformable-conv kernel reads an offset/mask map larger than its output
    (it indexes raw memory without checking shapes); reproduced so results match it exactly.
    """
    b, c = tensor.shape[:2]
    return tensor.reshape(b, -1)[:, : c * height * width].reshape(b, c, height, width)


class DyReLU(nn.Module):
    """Dynamic ReLU: max of two input-conditioned linear pieces per channel (task-aware attention)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        pooled = x.mean(dim=(2, 3))  # [B, C]
        coefficients = hard_sigmoid(self.fc2(F.relu(self.fc1(pooled)))).view(b, 4 * c, 1, 1)
        a1, b1, a2, b2 = torch.split(coefficients, c, dim=1)
        a1 = (a1 - 0.5) * 2.0 + 1.0
        a2 = (a2 - 0.5) * 2.0
        b1 = b1 - 0.5
        b2 = b2 - 0.5
        return torch.max(x * a1 + b1, x * a2 + b2)


class DyHeadBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.from_coarser = DeformConvNorm(channels, stride=1, groups=groups)
        self.same_level = DeformConvNorm(channels, stride=1, groups=groups)
        self.from_finer = DeformConvNorm(channels, stride=2, groups=groups)
        self.scale_attention = nn.Conv2d(channels, 1, 1)
        self.dyrelu = DyReLU(channels)
        self.offset_mask = nn.Conv2d(channels, 27, 3, padding=1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """levels: [P3..P7], each [B, C, H_l, W_l] -> same shapes."""
        outputs = []
        for index, feature in enumerate(levels):
            offset_mask = self.offset_mask(feature)  # [B, 27, H, W]
            offset = offset_mask[:, :18]
            mask = offset_mask[:, 18:].sigmoid()
            terms = [self.same_level(feature, offset, mask)]
            if index > 0:
                terms.append(self.from_finer(levels[index - 1], offset, mask))
            if index < len(levels) - 1:
                coarser = levels[index + 1]
                h, w = coarser.shape[-2:]
                out = self.from_coarser(coarser, leading_slice(offset, h, w), leading_slice(mask, h, w))
                terms.append(F.interpolate(out, size=feature.shape[-2:], mode="bilinear", align_corners=True))
            stacked = torch.stack(terms)  # [T, B, C, H, W]
            pooled = stacked.mean(dim=(3, 4), keepdim=True)  # [T, B, C, 1, 1]
            weights = hard_sigmoid(F.relu(F.conv2d(pooled.flatten(0, 1), self.scale_attention.weight,
                                                  self.scale_attention.bias)))
            weights = weights.view(len(terms), -1, 1, 1, 1)  # [T, B, 1, 1, 1]
            outputs.append((stacked * weights).mean(dim=0))
        return [self.dyrelu(level) for level in outputs]
