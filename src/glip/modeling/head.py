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


class TextureSkip(nn.Module):
    """Texture responses of low-level features: two 3x3 convs with GELU at the features' own
    resolution, so that averaging them over a level's cell keeps a pattern's energy (stripes, dots)
    where averaging the features themselves would wash it out. ``projection`` (1x1, zero-initialised
    by the head) maps the pooled responses to the head's width."""

    def __init__(self, in_channels: int, width: int, out_channels: int) -> None:
        super().__init__()
        self.filters = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.GELU(),
                                     nn.Conv2d(width, width, 3, padding=1), nn.GELU())
        self.projection = nn.Conv2d(width, out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, in_channels, H, W] -> texture responses [B, width, H, W] (pooled and projected by the head)."""
        return self.filters(features)


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
        # to both sides of the dot product: `skip_channels`-wide image features (GLIP passes the
        # backbone's first stage) average-pooled to each level, and the text encoder's output.
        # texture_skip_channels > 0: also their texture responses (`TextureSkip`), pooled likewise.
        self.visual_skip = self.text_skip = self.texture_skip = None
        if config.texture_skip_channels and not config.alignment_skip:
            raise ValueError("head.texture_skip_channels needs head.alignment_skip: true")
        if config.alignment_skip:
            if skip_channels is None:
                raise ValueError("head.alignment_skip needs skip_channels (the width of the skip features)")
            self.visual_skip = nn.Conv2d(skip_channels, channels, 1)
            if config.fused_dot_product:
                self.text_skip = nn.Linear(text_dim, text_dim)
            texture_out = None
            if config.texture_skip_channels:
                self.texture_skip = TextureSkip(skip_channels, config.texture_skip_channels, channels)
                texture_out = self.texture_skip.projection
            for layer in [self.visual_skip, self.text_skip, texture_out]:
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

    def project_text(self, dot_text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L, D] dot-product text -> (L2-normalised [B, L, D], what each location's feature is
        multiplied with [B, L, C])."""
        normalized = F.normalize(dot_text, p=2, dim=-1)
        return normalized, self.text_projection(normalized / 2.0)

    def forward(self, levels: list[torch.Tensor], text: TextFeatures,
                skip_features: torch.Tensor | None = None) -> HeadOutput:
        """levels: [P3..P7] [B, C, H_l, W_l]; skip_features (needed with alignment_skip): the
        features the skips read (GLIP: the backbone's first stage) [B, skip_channels, H', W'],
        average-pooled to each level here."""
        if self.visual_skip is not None and skip_features is None:
            raise ValueError("this head has alignment_skip: pass skip_features (the backbone's first stage)")
        visual, hidden = self.tower(levels, text)
        return self.predict(visual, hidden, text, skip_features)

    @property
    def tower_reads_text(self) -> bool:
        """Whether the tower's visual features depend on the text (fusion) or its text features
        change (text layers); without either (GLIP-T(A)), `tower` may run once for any prompt."""
        return self.config.use_fusion or self.config.use_text_layers

    def tower(self, levels: list[torch.Tensor], text: TextFeatures) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The blocks: levels [B, C, H_l, W_l] and text [B, L, D] -> fused levels and text features."""
        visual, hidden = list(levels), text.hidden
        for block in self.blocks:
            visual, hidden = block(visual, hidden, text.mask)
        return visual, hidden

    def predict(self, visual: list[torch.Tensor], hidden: torch.Tensor, text: TextFeatures,
                skip_features: torch.Tensor | None = None) -> HeadOutput:
        """The per-location predictions from the tower's output (``visual`` per level [B, C, H_l, W_l],
        ``hidden`` [B, L, D]); ``text`` is the text encoder's output, ``skip_features`` as in forward."""
        boxes, centerness, queries = self.visual_predictions(visual, skip_features)
        return HeadOutput(visual=visual, text=hidden, box_regression=boxes, centerness=centerness,
                          token_logits=self.token_logits(queries, hidden, text))

    def visual_predictions(self, visual: list[torch.Tensor], skip_features: torch.Tensor | None = None
                           ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """What the predictions take from the tower's levels alone: per level the box deltas
        [B, 4, H, W], centerness logits [B, 1, H, W] and the dot product's queries [B, H*W, C]."""
        if self.visual_skip is not None and skip_features is None:
            raise ValueError("this head has alignment_skip: pass skip_features (the backbone's first stage)")
        textures = self.texture_skip(skip_features) if self.texture_skip is not None else None
        boxes, centerness, queries = [], [], []
        for index, feature in enumerate(visual):
            boxes.append(self.scales[index](self.box_regression(feature)))
            centerness.append(self.centerness(feature))
            if self.visual_skip is not None:
                pooled = F.adaptive_avg_pool2d(skip_features, feature.shape[-2:])  # [B, skip_channels, H, W]
                feature = feature + self.visual_skip(pooled)  # [B, C, H, W]
                if textures is not None:
                    feature = feature + self.texture_skip.projection(
                        F.adaptive_avg_pool2d(textures, feature.shape[-2:]))
            queries.append(feature.flatten(2).transpose(1, 2))  # [B, H*W, C]
        return boxes, centerness, queries

    def token_logits(self, queries: list[torch.Tensor], hidden: torch.Tensor, text: TextFeatures) -> list[torch.Tensor]:
        """Per level [B, H*W, L] alignment logits of the queries ([B, H*W, C] per level) with the text."""
        normalized, projected = self.project_text(self.dot_product_text(hidden, text))
        token_bias = torch.matmul(normalized, self.bias_lang) + self.bias0  # [B, L]
        clamp = self.config.logit_clamp
        logits = []
        for level_queries in queries:
            logit = torch.matmul(level_queries, projected.transpose(-1, -2)) / self.log_scale.exp()
            logits.append((logit + token_bias[:, None, :]).clamp(-clamp, clamp))  # [B, H*W, L]
        return logits
