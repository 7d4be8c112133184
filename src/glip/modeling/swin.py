"""Swin Transformer backbone (detection variant: any input size, windows padded, no absolute position).

Parameter names follow the usual Swin layout (``patch_embed``, ``layers.i.blocks.j``, ``norm{i}``) so
that official checkpoints map onto it by prefix only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glip.config import SwinConfig


class DropPath(nn.Module):
    """Stochastic depth per sample (identity at inference)."""

    def __init__(self, probability: float) -> None:
        super().__init__()
        self.probability = probability

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.probability == 0.0 or not self.training:
            return x
        keep = 1.0 - self.probability
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def relative_position_index(window: int) -> torch.Tensor:
    """[w*w, w*w] index into the (2w-1)^2 bias table for every (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)  # [2, w*w]
    relative = coords[:, :, None] - coords[:, None, :]  # [2, w*w, w*w]
    relative = relative.permute(1, 2, 0) + (window - 1)  # shift to >= 0
    return relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside a window, with a learned relative-position bias."""

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B*nW, N, C] windows of N = w*w tokens; mask: [nW, N, N] (0 or -100) or None."""
        batch_windows, n, c = x.shape
        qkv = self.qkv(x).reshape(batch_windows, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B*nW, nh, N, hd]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B*nW, nh, N, N]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.view(-1, num_windows, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch_windows, n, c)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B*nW, w*w, C] (H, W multiples of the window)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """[B*nW, w*w, C] -> [B, H, W, C]."""
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float,
                 drop_path: float) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int, shift_mask: torch.Tensor | None) -> torch.Tensor:
        """x: [B, H*W, C]. The map is padded to window multiples *after* norm1 and padded positions
        are not masked (only the shifted-window mask applies), as in the official model."""
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        pad_b = (self.window - h % self.window) % self.window
        pad_r = (self.window - w % self.window) % self.window
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift > 0:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(x, self.window), shift_mask if self.shift > 0 else None)
        x = window_reverse(windows, self.window, hp, wp)
        if self.shift > 0:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x[:, :h, :w, :].reshape(b, h * w, c)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concatenation + linear reduction (halves resolution, doubles channels)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float,
                 drop_paths: list[float], downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.shift = window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else self.shift, mlp_ratio, drop_paths[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def shifted_window_mask(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """[nW, w*w, w*w] attention mask (-100 between tokens from different regions after the roll)."""
        hp = -(-h // self.window) * self.window
        wp = -(-w // self.window) * self.window
        regions = torch.zeros(1, hp, wp, 1, device=device)
        bounds = (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None))
        label = 0
        for hs in bounds:
            for ws in bounds:
                regions[:, hs, ws, :] = label
                label += 1
        region_windows = window_partition(regions, self.window).squeeze(-1)  # [nW, w*w]
        mask = region_windows.unsqueeze(1) - region_windows.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """Returns (stage output [B, H*W, C], input of the next stage, its H, its W)."""
        mask = self.shifted_window_mask(h, w, x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, h, w, mask)
        if self.downsample is None:
            return x, x, h, w
        return x, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, _, h, w = images.shape
        images = F.pad(images, (0, (-w) % self.patch, 0, (-h) % self.patch))
        x = self.proj(images)  # [B, C, H/4, W/4]
        b, c, hh, ww = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).view(b, c, hh, ww)


class SwinBackbone(nn.Module):
    """Returns the stage feature maps [B, C_i, H_i, W_i] for every stage (strides 4, 8, 16, 32);
    stages listed in ``config.out_stages`` pass through their output LayerNorm ``norm{i}``."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # linear, like linspace
        self.layers = nn.ModuleList()
        channels = config.stage_channels
        for i, depth in enumerate(config.depths):
            start = sum(config.depths[:i])
            self.layers.append(SwinStage(
                channels[i], depth, config.num_heads[i], config.window_size, config.mlp_ratio,
                rates[start:start + depth], downsample=i < len(config.depths) - 1,
            ))
        for i in config.out_stages:
            self.add_module(f"norm{i}", nn.LayerNorm(channels[i]))

    @property
    def out_channels(self) -> list[int]:
        return [self.config.stage_channels[i] for i in self.config.out_stages]

    def forward(self, images: torch.Tensor, num_stages: int | None = None) -> list[torch.Tensor]:
        """images: [B, 3, H, W] -> list over the stages of [B, C_i, H_i, W_i]: all of them, or the
        first ``num_stages`` (the rest is not computed)."""
        x = self.patch_embed(images)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [B, H*W, C]
        outputs = []
        for i, stage in enumerate(self.layers[:num_stages]):
            out, x, next_h, next_w = stage(x, h, w)
            if i in self.config.out_stages:
                out = getattr(self, f"norm{i}")(out)
            channels = self.config.stage_channels[i]
            outputs.append(out.view(b, h, w, channels).permute(0, 3, 1, 2).contiguous())
            h, w = next_h, next_w
        return outputs
