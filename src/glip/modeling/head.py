"""The language-aware dense head (VLDyHead) and its per-location predictions.

Each block is [cross-modal fusion] -> [text layer] -> [DyHead block]; GLIP-T(A) keeps only the
DyHead blocks. After the tower every location predicts box deltas, a centerness logit and one
alignment logit per text token: logit = <v, proj(t)> / exp(log_scale) + bias(t). With
``alignment_skip`` (our models only) v and t also get learnt projections of the head's inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from glip.config import HeadConfig
from glip.modeling.dyhead import DyHeadBlock
from glip.modeling.fusion import FusionBlock
from glip.modeling.text_encoder import TextFeatures
from glip.modeling.text_layer import TextLayer


@dataclass
class HeadOutput:
    """Per level l (P3..P7): tower features [B, C, H_l, W_l], box deltas [B, 4, H_l, W_l] (after the
    level's Scale), centerness logits [B, 1, H_l, W_l] and token logits [B, H_l*W_l, L]; plus the
    text features used for the dot product [B, L, D]."""

    visual: list[torch.Tensor]
    text: torch.Tensor
    box_regression: list[torch.Tensor]
    centerness: list[torch.Tensor]
    token_logits: list[torch.Tensor]


class Scale(nn.Module):
    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([value]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class HeadBlock(nn.Module):
    def __init__(self, config: HeadConfig, text_dim: int, text_heads: int, text_intermediate: int,
                 text_eps: float, text_dropout: float) -> None:
        super().__init__()
        self.fusion = None
        self.text_layer = None
        if config.use_fusion:
            self.fusion = FusionBlock(
                config.channels, text_dim, config.fusion_dim, config.fusion_heads, config.fusion_dropout,
                config.fusion_drop_path, config.logit_clamp, init_scale=1.0 / config.num_blocks,
            )
        if config.use_text_layers:
            self.text_layer = TextLayer(text_dim, text_heads, text_intermediate, text_dropout, text_eps,
                                        config.logit_clamp)
        self.dyconv = DyHeadBlock(config.channels, config.group_norm_groups)

    def forward(self, levels: list[torch.Tensor], text: torch.Tensor,
                mask: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if self.fusion is not None:
            levels, text = self.fusion(levels, text, mask)
        if self.text_layer is not None:
            text = self.text_layer(text, mask)
        return self.dyconv(levels), text


class VLHead(nn.Module):
    def __init__(self, config: HeadConfig, text_dim: int, text_heads: int, text_intermediate: int,
                 text_eps: float = 1e-12, text_dropout: float = 0.1, skip_channels: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(
            HeadBlock(config, text_dim, text_heads, text_intermediate, text_eps, text_dropout)
            for _ in range(config.num_blocks)
        )
        channels = config.channels
        self.box_regression = nn.Conv2d(channels, 4, 1)
        self.centerness = nn.Conv2d(channels, 1, 1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in config.anchor_strides)
        self.text_projection = nn.Linear(text_dim, channels)
        self.log_scale = nn.Parameter(torch.zeros(1))
        self.bias_lang = nn.Parameter(torch.zeros(text_dim))
        self.bias0 = nn.Parameter(torch.tensor([-math.log((1 - config.prior_prob) / config.prior_prob)]))
        # alignment_skip (our models only): zero-initialised projections of low-level features added
        # to both sides of the dot product: `skip_channels`-wide image features pooled to each level
        # (GLIP passes the backbone's first stage) and the text encoder's output.
        self.visual_skip = self.text_skip = None
        if config.alignment_skip:
            if skip_channels is None:
                raise ValueError("head.alignment_skip needs skip_channels (the width of the skip features)")
            self.visual_skip = nn.Conv2d(skip_channels, channels, 1)
            if config.fused_dot_product:
                self.text_skip = nn.Linear(text_dim, text_dim)
            for layer in [self.visual_skip, self.text_skip]:
                if layer is not None:
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
        for conv in [self.box_regression, self.centerness]:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def dot_product_text(self, hidden: torch.Tensor, text: TextFeatures) -> torch.Tensor:
        """The text side of the dot product, before normalisation: the fused text ``hidden`` (or the
        BERT output without fused_dot_product), plus the text skip. [B, L, D]"""
        dot_text = hidden if self.config.fused_dot_product else text.embedded
        if self.text_skip is not None:
            dot_text = dot_text + self.text_skip(text.embedded)
        return dot_text

    def forward(self, levels: list[torch.Tensor], text: TextFeatures,
                skip_features: list[torch.Tensor] | None = None) -> HeadOutput:
        """levels: [P3..P7] [B, C, H_l, W_l]; skip_features (needed with alignment_skip): per level
        [B, skip_channels, H_l, W_l]."""
        if self.visual_skip is not None and skip_features is None:
            raise ValueError("this head has alignment_skip: pass skip_features (one map per level)")
        visual, hidden = list(levels), text.hidden
        for block in self.blocks:
            visual, hidden = block(visual, hidden, text.mask)
        normalized = F.normalize(self.dot_product_text(hidden, text), p=2, dim=-1)
        projected = self.text_projection(normalized / 2.0)  # [B, L, C]
        token_bias = torch.matmul(normalized, self.bias_lang) + self.bias0  # [B, L]
        clamp = self.config.logit_clamp
        boxes, centerness, logits = [], [], []
        for index, feature in enumerate(visual):
            boxes.append(self.scales[index](self.box_regression(feature)))
            centerness.append(self.centerness(feature))
            if self.visual_skip is not None:
                feature = feature + self.visual_skip(skip_features[index])  # [B, C, H, W]
            queries = feature.flatten(2).transpose(1, 2)  # [B, H*W, C]
            logit = torch.matmul(queries, projected.transpose(-1, -2)) / self.log_scale.exp()
            logits.append((logit + token_bias[:, None, :]).clamp(-clamp, clamp))  # [B, H*W, L]
        return HeadOutput(visual=visual, text=hidden, box_regression=boxes, centerness=centerness,
                          token_logits=logits)
