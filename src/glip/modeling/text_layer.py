"""The BERT-style transformer layer that the head applies to the text after every fusion block.

Same computation as a BERT encoder layer, except that attention scores are clamped to +-clamp
before the additive padding mask is applied (official overflow guard). Parameter names follow
BERT's (``attention.self.query`` ...) so that official checkpoints map 1:1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from glip.modeling.attention_masks import text_attention_mask


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float, clamp: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.clamp = clamp
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape  # [B, L, D] -> [B, nh, L, hd]
        return x.view(b, n, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D], additive_mask: [B, 1, 1, L] or causal [B, 1, L, L] (0 or a large negative) -> [B, L, D]."""
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)  # [B, nh, L, L]
        scores = scores.clamp(-self.clamp, self.clamp) + additive_mask
        probs = self.dropout(scores.softmax(dim=-1))
        out = torch.matmul(probs, v).permute(0, 2, 1, 3)  # [B, L, nh, hd]
        return out.reshape(x.shape)


class DenseResidualNorm(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual) (BERT's "output" sub-layers)."""

    def __init__(self, in_dim: int, dim: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float, eps: float, clamp: float) -> None:
        super().__init__()
        self.self = SelfAttention(dim, num_heads, dropout, clamp)
        self.output = DenseResidualNorm(dim, dim, dropout, eps)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, additive_mask), x)


class Intermediate(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, hidden)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class TextLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, intermediate: int, dropout: float, eps: float,
                 clamp: float) -> None:
        super().__init__()
        self.attention = Attention(dim, num_heads, dropout, eps, clamp)
        self.intermediate = Intermediate(dim, intermediate)
        self.output = DenseResidualNorm(intermediate, dim, dropout, eps)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, text: torch.Tensor, mask: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """text: [B, L, D], mask: [B, L] (1 = real token) -> [B, L, D]. ``causal``: token t attends to
        tokens 0..t only (captioning)."""
        if causal:
            additive = text_attention_mask(mask, text.dtype, causal=True)  # [B, 1, L, L]
        else:
            additive = (1.0 - mask[:, None, None, :].to(text.dtype)) * torch.finfo(text.dtype).min
        attended = self.attention(text, additive)
        return self.output(self.intermediate(attended), attended)
