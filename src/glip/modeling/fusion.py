"""Cross-modal bi-directional attention (X-MHA): visual tokens of all levels <-> text tokens.

One attention matrix serves both directions: image queries over text keys (padding masked) and,
transposed, text queries over all visual positions. The residual base is the LayerNorm-ed input,
as in the official model: v = LN(v) + gamma_v * delta_v, l = LN(l) + gamma_l * delta_l.

Causal mode (captioning, ours: GLIPv2 published no decoder): the text side reads the image as
always, but the image side does not read the text (delta_v = 0, v = LN(v)). Any image feature that
attended to the text would mix every token into every position, and a token reading it in the next
block would see the tokens after it. Without that direction the visual stream depends on the image
alone, so fused token t depends on the image and tokens 0..t only (the text-to-text attention being
causal too), and the visual stream can be computed once per image and reused at every decoding step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glip.modeling.swin import DropPath


class BiAttention(nn.Module):
    def __init__(self, visual_dim: int, text_dim: int, embed_dim: int, num_heads: int,
                 dropout: float, clamp: float) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"fusion dim {embed_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.dropout = dropout
        self.clamp = clamp
        self.visual_query = nn.Linear(visual_dim, embed_dim)
        self.text_key = nn.Linear(text_dim, embed_dim)
        self.visual_value = nn.Linear(visual_dim, embed_dim)
        self.text_value = nn.Linear(text_dim, embed_dim)
        self.visual_out = nn.Linear(embed_dim, visual_dim)
        self.text_out = nn.Linear(embed_dim, text_dim)
        for linear in [self.visual_query, self.text_key, self.visual_value, self.text_value,
                       self.visual_out, self.text_out]:
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape  # [B, N, E] -> [B*nh, N, hd]
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2).reshape(b * self.num_heads, n, self.head_dim)

    def _merge(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        _, n, _ = x.shape  # [B*nh, N, hd] -> [B, N, E]
        return x.view(batch, self.num_heads, n, self.head_dim).transpose(1, 2).reshape(batch, n, -1)

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                causal: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """visual: [B, Nv, Cv], text: [B, L, Ct], text_mask: [B, L] -> deltas [B, Nv, Cv], [B, L, Ct].
        ``causal``: no image-from-text direction (its delta is None), see the module docstring."""
        batch, num_visual, _ = visual.shape
        num_text = text.shape[1]
        query = self._heads(self.visual_query(visual) * self.scale)  # [B*nh, Nv, hd]
        key = self._heads(self.text_key(text))  # [B*nh, L, hd]
        value_visual = self._heads(self.visual_value(visual))  # [B*nh, Nv, hd]
        value_text = self._heads(self.text_value(text))  # [B*nh, L, hd]

        logits = torch.bmm(query, key.transpose(1, 2)).clamp(-self.clamp, self.clamp)  # [B*nh, Nv, L]
        # Text side: every visual position is a key (no mask); max-subtracted, clamped, softmax.
        logits_text = logits.transpose(1, 2)  # [B*nh, L, Nv]
        logits_text = logits_text - logits_text.max(dim=-1, keepdim=True)[0]
        probs_text = logits_text.clamp(-self.clamp, self.clamp).softmax(dim=-1)
        if causal:
            probs_text = F.dropout(probs_text, p=self.dropout, training=self.training)
            return None, self.text_out(self._merge(torch.bmm(probs_text, value_visual), batch))
        # Visual side: padded text keys get -9e15. (Real tokens get +1, as the official mask does; a
        # constant shift that leaves the softmax unchanged.)
        additive = text_mask.to(logits.dtype).masked_fill(text_mask == 0, -9e15)[:, None, None, :]
        logits = (logits.view(batch, self.num_heads, num_visual, num_text) + additive)
        probs_visual = logits.view(batch * self.num_heads, num_visual, num_text).softmax(dim=-1)

        probs_visual = F.dropout(probs_visual, p=self.dropout, training=self.training)
        probs_text = F.dropout(probs_text, p=self.dropout, training=self.training)
        delta_visual = self.visual_out(self._merge(torch.bmm(probs_visual, value_text), batch))
        delta_text = self.text_out(self._merge(torch.bmm(probs_text, value_visual), batch))
        return delta_visual, delta_text


class FusionBlock(nn.Module):
    """LayerNorm both modalities, exchange information, add layer-scaled deltas to the LN-ed inputs."""

    def __init__(self, visual_dim: int, text_dim: int, embed_dim: int, num_heads: int,
                 dropout: float, drop_path: float, clamp: float, init_scale: float) -> None:
        super().__init__()
        self.norm_visual = nn.LayerNorm(visual_dim)
        self.norm_text = nn.LayerNorm(text_dim)
        self.attn = BiAttention(visual_dim, text_dim, embed_dim, num_heads, dropout, clamp)
        self.drop_path = DropPath(drop_path)
        self.gamma_visual = nn.Parameter(init_scale * torch.ones(visual_dim))
        self.gamma_text = nn.Parameter(init_scale * torch.ones(text_dim))

    def forward(self, levels: list[torch.Tensor], text: torch.Tensor, text_mask: torch.Tensor,
                causal: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
        """levels: list of [B, C, H_l, W_l]; text: [B, L, Ct] -> (fused levels, fused text).
        ``causal``: the levels come back LayerNorm-ed but not fused with the text (module docstring)."""
        sizes = [level.shape[-2:] for level in levels]
        visual = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1)  # [B, sum(HW), C]
        visual = self.norm_visual(visual)
        text = self.norm_text(text)
        delta_visual, delta_text = self.attn(visual, text, text_mask, causal)
        if delta_visual is not None:
            visual = visual + self.drop_path(self.gamma_visual * delta_visual)
        text = text + self.drop_path(self.gamma_text * delta_text)
        visual = visual.transpose(1, 2)  # [B, C, sum(HW)]
        fused, start = [], 0
        for h, w in sizes:
            fused.append(visual[:, :, start:start + h * w].reshape(visual.shape[0], -1, h, w))
            start += h * w
        return fused, text
