"""Captioning on GLIP's fused text features: the causal text pass and the next-token head.

GLIPv2 generates captions from the language side of its fusion with a causal attention mask on the
text; its decoder was never published. What is ours here:

- The causal pass (`caption_text_features`): the text encoder and the head's text layers attend
  causally (`glip.modeling.attention_masks`), and each fusion block lets the text read the image
  but not the image read the text (`glip.modeling.fusion`, causal mode). The fused feature of token t
  then depends on the image and tokens 0..t only, so position t predicts token t+1 in training
  (teacher forcing, all positions at once) exactly as it does in generation.
- Since the visual stream no longer depends on the text, it is computed once per image
  (`caption_context`: the levels entering every head block) and reused at every decoding step and
  for every beam; a step runs only the text side.
- `CaptionHead`: BERT's LM prediction head shape (dense + GELU + LayerNorm, then the vocabulary),
  by default tied to the text encoder's word embeddings (`CaptionConfig.tie_word_embeddings`).

Example:
    >>> model = GLIP(dataclasses.replace(get_config("glip-tiny"), caption=CaptionConfig(enabled=True)))  # doctest: +SKIP
    >>> context = caption_context(model, model.encode_images(images))  # doctest: +SKIP
    >>> caption_logits(model, context, input_ids, attention_mask).shape  # doctest: +SKIP
    torch.Size([B, L, 30522])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from glip.config import CaptionConfig

if TYPE_CHECKING:
    from glip.modeling.glip import GLIP, ImageFeatures

NO_CAPTION_HEAD = ("this model has no caption head, so it cannot describe images: train one with glip caption-train "
                   "(model.overrides: {caption: {enabled: true}}, see configs/caption-shapes.yaml) and use the model "
                   "file it writes")


class CaptionHead(nn.Module):
    """Fused text features -> next-token logits over the vocabulary.

    Args:
        config: the caption section of the model config.
        hidden_size: width of the text features.
        vocab_size: the text encoder's vocabulary.
    """

    def __init__(self, config: CaptionConfig, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        # Untied: an output matrix of its own; tied: the word embeddings passed to forward.
        self.decoder = None if config.tie_word_embeddings else nn.Linear(hidden_size, vocab_size, bias=False)

    def forward(self, features: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """features: [..., D]; word_embeddings: [V, D] (used when tied) -> logits [..., V]."""
        hidden = self.norm(F.gelu(self.dense(features)))
        if self.decoder is not None:
            return self.decoder(hidden) + self.bias
        return F.linear(hidden, word_embeddings, self.bias)


@dataclass
class CaptionContext:
    """What the causal text pass reads of the images: per head block, the visual levels entering it
    (each [B, C, H_l, W_l]); they depend on the images only."""

    block_levels: list[list[torch.Tensor]]

    def select(self, rows: torch.Tensor) -> "CaptionContext":
        """The context of images ``rows`` ([N] indices, repeats allowed: one row per beam)."""
        return CaptionContext([[level.index_select(0, rows) for level in levels] for levels in self.block_levels])


def require_caption_model(model: "GLIP") -> None:
    """Raise a one-line ValueError when ``model`` cannot caption."""
    if model.caption_head is None:
        raise ValueError(NO_CAPTION_HEAD)


def caption_context(model: "GLIP", image_features: "ImageFeatures") -> CaptionContext:
    """Run the head's visual stream once, in causal mode (no text reaches it): the levels entering
    each block. The last block's DyHead output is not needed and not computed."""
    levels = list(image_features.levels)
    blocks = list(model.head.blocks)
    block_levels = []
    for index, block in enumerate(blocks):
        block_levels.append(levels)
        if index + 1 < len(blocks):
            # the fusion's visual output in causal mode is LN(levels); it needs no text
            normed = block.fusion.norm_visual(torch.cat([lv.flatten(2).transpose(1, 2) for lv in levels], dim=1))
            levels = block.dyconv(_split_levels(normed, levels))  # [B, sum(HW), C] -> levels
    return CaptionContext(block_levels)


def _split_levels(visual: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """[B, sum(HW), C] -> levels shaped like ``like`` ([B, C, H_l, W_l] each)."""
    visual = visual.transpose(1, 2)  # [B, C, sum(HW)]
    out, start = [], 0
    for level in like:
        h, w = level.shape[-2:]
        out.append(visual[:, :, start:start + h * w].reshape(visual.shape[0], -1, h, w))
        start += h * w
    return out


def caption_text_features(model: "GLIP", context: CaptionContext, input_ids: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
    """The fused text features of the causal pass: input_ids, attention_mask [B, L] (context of B
    images) -> [B, L, D]; row t depends on the image and tokens 0..t only."""
    text = model.encode_text(input_ids, attention_mask, causal=True).hidden  # [B, L, D]
    for block, levels in zip(model.head.blocks, context.block_levels):
        _, text = block.fusion(levels, text, attention_mask, causal=True)
        if block.text_layer is not None:
            text = block.text_layer(text, attention_mask, causal=True)
    return text


def caption_logits(model: "GLIP", context: CaptionContext, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """Next-token logits [B, L, V]: position t scores token t+1."""
    require_caption_model(model)
    features = caption_text_features(model, context, input_ids, attention_mask)
    embeddings = model.text_encoder.bert.embeddings.word_embeddings.weight  # [V, D]
    return model.caption_head(features, embeddings)
