"""Cross-modal bi-directional attention (X-MHA): visual tokens of all levels <-> text tokens.

One attention matrix serves both directions: image queries over text keys (padding masked) and,
transposed, text queries over all visual positions. The residual base is the LayerNorm-ed input,
as in the official model: v = LN(v) + gamma_v * delta_v, l = LN(l) + gamma_l * delta_l.

The attention is computed in reassociated order by default: the text keys and values are folded
into the visual query/value/output weights (per head, [Cv] x [L] matrices), so the visual tokens
meet only [Cv, heads*L] products instead of three projections to the 2048-wide inner dimension.
Same result as the official order up to float rounding, in training too (dropout included).

Causal mode (captioning, ours: GLIPv2 published no decoder): the text side reads the image as
always, but the image side does not read the text (delta_v = 0, v = LN(v)). Any image feature that
attended to the text would mix every token into every position, and a token reading it in the next
block would see the tokens after it. Without that direction the visual stream depends on the image
alone, so fused token t depends on the image and tokens 0..t only (the text-to-text attention being
causal too), and the visual stream can be computed once per image and reused at every decoding step.
Both attention orders support it; the reassociated one then skips every visual-side product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glip.modeling.swin import DropPath

ATTENTION_ORDERS = ("reassociated", "direct")


class BiAttention(nn.Module):
    def __init__(self, visual_dim: int, text_dim: int, embed_dim: int, num_heads: int,
                 dropout: float, clamp: float, order: str = "reassociated") -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"fusion dim {embed_dim} is not divisible by {num_heads} heads")
        if order not in ATTENTION_ORDERS:
            raise ValueError(f"attention order {order!r} is not one of {ATTENTION_ORDERS}")
        # "reassociated" (default) never projects the visual tokens to embed_dim; "direct" is the
        # official order, kept as the reference for tests and benchmarks. Same result up to rounding.
        self.order = order
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
        if self.order == "direct":
            return self._forward_direct(visual, text, text_mask, causal)
        return self._forward_reassociated(visual, text, text_mask, causal)

    def _probabilities(self, logits: torch.Tensor, text_mask: torch.Tensor, position_dim: int,
                       causal: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Both softmaxes of the official attention from clamped logits that carry the text tokens in
        the last dim and the visual positions in `position_dim` (heads anywhere else).

        Returns (visual-side probabilities over text tokens, None when `causal`; text-side
        probabilities over positions)."""
        # Text side: every visual position is a key (no mask); max-subtracted, clamped, softmax.
        logits_text = logits - logits.max(dim=position_dim, keepdim=True)[0]
        probs_text = logits_text.clamp(-self.clamp, self.clamp).softmax(dim=position_dim)
        probs_visual = None
        if not causal:
            # Visual side: padded text keys get -9e15. (Real tokens get +1, as the official mask
            # does; a constant shift that leaves the softmax unchanged.)
            additive = text_mask.to(logits.dtype).masked_fill(text_mask == 0, -9e15)  # [B, L]
            additive = additive.view(additive.shape[0], *([1] * (logits.dim() - 2)), additive.shape[1])
            probs_visual = (logits + additive).softmax(dim=-1)
            probs_visual = F.dropout(probs_visual, p=self.dropout, training=self.training)
        probs_text = F.dropout(probs_text, p=self.dropout, training=self.training)
        return probs_visual, probs_text

    def _forward_direct(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                        causal: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The official order: project the visual side to the inner dimension, attend there."""
        batch, num_visual, _ = visual.shape
        num_text = text.shape[1]
        query = self._heads(self.visual_query(visual) * self.scale)  # [B*nh, Nv, hd]
        key = self._heads(self.text_key(text))  # [B*nh, L, hd]
        value_visual = self._heads(self.visual_value(visual))  # [B*nh, Nv, hd]
        logits = torch.bmm(query, key.transpose(1, 2)).clamp(-self.clamp, self.clamp)  # [B*nh, Nv, L]
        logits = logits.view(batch, self.num_heads, num_visual, num_text)  # [B, nh, Nv, L]
        probs_visual, probs_text = self._probabilities(logits, text_mask, position_dim=2, causal=causal)
        probs_text = probs_text.view(batch * self.num_heads, num_visual, num_text).transpose(1, 2)  # [B*nh, L, Nv]
        delta_text = self.text_out(self._merge(torch.bmm(probs_text, value_visual), batch))
        if probs_visual is None:
            return None, delta_text
        value_text = self._heads(self.text_value(text))  # [B*nh, L, hd]
        probs_visual = probs_visual.view(batch * self.num_heads, num_visual, num_text)
        delta_visual = self.visual_out(self._merge(torch.bmm(probs_visual, value_text), batch))
        return delta_visual, delta_text

    def _forward_reassociated(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                              causal: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The same attention with the products reassociated so that the visual tokens never enter the
        inner dimension: every visual-side product is [Nv, Cv] x [Cv, nh*L] or its transpose.

        With W_q, W_v (visual query/value), W_o (visual output), k_h / u_h the text keys / values of
        head h and s the scale: logits_h = V (s W_q,h^T k_h^T) + s b_q,h k_h^T, the visual delta is
        sum_h P_h (u_h W_o,h^T) + b_o, and the text-side head output is (P'_h^T V) W_v,h^T + (P'_h^T 1) b_v,h
        (the row sums are kept explicitly: after dropout they are not 1).
        """
        batch, num_visual, visual_dim = visual.shape
        num_text, heads, head_dim = text.shape[1], self.num_heads, self.head_dim
        key = self.text_key(text).view(batch, num_text, heads, head_dim)  # [B, L, nh, hd]
        query_weight = self.visual_query.weight.view(heads, head_dim, visual_dim)  # [nh, hd, Cv]
        query_bias = self.visual_query.bias.view(heads, head_dim)  # [nh, hd]
        key_to_visual = torch.einsum("blnd,ndc->bnlc", key, query_weight) * self.scale  # [B, nh, L, Cv]
        key_bias = torch.einsum("blnd,nd->bnl", key, query_bias) * self.scale  # [B, nh, L]
        logits = torch.baddbmm(key_bias.reshape(batch, 1, heads * num_text), visual,
                               key_to_visual.reshape(batch, heads * num_text, visual_dim).transpose(1, 2))
        logits = logits.clamp(-self.clamp, self.clamp).view(batch, num_visual, heads, num_text)  # [B, Nv, nh, L]
        probs_visual, probs_text = self._probabilities(logits, text_mask, position_dim=1, causal=causal)

        probs_text = probs_text.reshape(batch, num_visual, heads * num_text)  # [B, Nv, nh*L]
        pooled = torch.bmm(probs_text.transpose(1, 2), visual).view(batch, heads, num_text, visual_dim)
        mass = probs_text.sum(dim=1).view(batch, heads, num_text)  # [B, nh, L]
        value_weight = self.visual_value.weight.view(heads, head_dim, visual_dim)  # [nh, hd, Cv]
        value_bias = self.visual_value.bias.view(heads, head_dim)  # [nh, hd]
        heads_text = (torch.einsum("bnlc,ndc->blnd", pooled, value_weight)
                      + torch.einsum("bnl,nd->blnd", mass, value_bias))  # [B, L, nh, hd]
        delta_text = self.text_out(heads_text.reshape(batch, num_text, heads * head_dim))
        if probs_visual is None:
            return None, delta_text

        value_text = self.text_value(text).view(batch, num_text, heads, head_dim)  # [B, L, nh, hd]
        out_weight = self.visual_out.weight.view(visual_dim, heads, head_dim)  # [Cv, nh, hd]
        text_to_visual = torch.einsum("blnd,cnd->bnlc", value_text, out_weight)  # [B, nh, L, Cv]
        delta_visual = torch.baddbmm(self.visual_out.bias.view(1, 1, visual_dim),
                                     probs_visual.reshape(batch, num_visual, heads * num_text),
                                     text_to_visual.reshape(batch, heads * num_text, visual_dim))  # [B, Nv, Cv]
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
