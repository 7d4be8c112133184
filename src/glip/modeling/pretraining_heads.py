"""GLIPv2's pre-training heads: the L_inter projections and the masked-language-model head.

They are parameters of the model (saved in its checkpoints and files) but the detector's forward
never calls them: the training losses do (`glip.training.inter_image_loss`, `glip.training.mlm`).
`GLIP` builds them only when ``config.pretraining`` enables them, so a model without them (every
official and existing model) has exactly the parameters it had before.

Example:
    >>> from glip.config import PretrainingConfig
    >>> heads = PretrainingHeads(PretrainingConfig(inter_image=True, mlm=True), visual_dim=32, text_dim=32,
    ...                          vocab_size=30522)
    >>> heads.mlm(torch.zeros(2, 5, 32)).shape
    torch.Size([2, 5, 30522])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from glip.config import PretrainingConfig


class InterImageProjections(nn.Module):
    """Region and token features -> L2-normalised ``dim``-wide embeddings, and the learnable
    temperature of their cosine similarity (official `shallow_contrastive_projection_image/_text`
    and `shallow_log_scale`).

    Args:
        visual_dim: width of the head's visual features (``head.channels``).
        text_dim: width of the fused text features (``text.hidden_size``).
        dim: the embedding width (official 64).
        temperature: the learnable temperature's starting value (the official log-scale starts at 1).
    """

    def __init__(self, visual_dim: int, text_dim: int, dim: int = 64, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"the inter-image temperature must be positive, got {temperature}")
        self.visual = nn.Linear(visual_dim, dim)
        self.text = nn.Linear(text_dim, dim)
        # similarity = cosine / exp(log_temperature)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def embed_regions(self, features: torch.Tensor) -> torch.Tensor:
        """[R, visual_dim] -> [R, dim], unit length."""
        return F.normalize(self.visual(features), p=2, dim=-1)

    def embed_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """[T, text_dim] -> [T, dim], unit length."""
        return F.normalize(self.text(features), p=2, dim=-1)

    def similarity(self, regions: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """[R, dim], [T, dim] unit embeddings -> [R, T] cosine / temperature."""
        return regions @ tokens.t() / self.log_temperature.exp()


class MaskedLanguageModelHead(nn.Module):
    """BERT's LM prediction head, untied from the input embeddings (official
    `BertLMPredictionHead`): dense + GELU + LayerNorm, then a decoder to the vocabulary."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """[..., hidden_size] token features -> [..., vocab_size] logits."""
        return self.decoder(self.norm(F.gelu(self.dense(text))))


class PretrainingHeads(nn.Module):
    """The heads ``config`` enables (the others are None)."""

    def __init__(self, config: PretrainingConfig, visual_dim: int, text_dim: int, vocab_size: int,
                 layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        if config.inter_image_dim <= 0:
            raise ValueError(f"pretraining.inter_image_dim must be positive, got {config.inter_image_dim}")
        if not config.inter_image_temperature > 0:
            raise ValueError("pretraining.inter_image_temperature must be positive, got "
                             f"{config.inter_image_temperature}")
        self.inter_image = InterImageProjections(visual_dim, text_dim, config.inter_image_dim,
                                                 config.inter_image_temperature) \
            if config.inter_image else None
        self.mlm = MaskedLanguageModelHead(text_dim, vocab_size, layer_norm_eps) if config.mlm else None
