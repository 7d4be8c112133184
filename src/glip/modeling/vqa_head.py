"""The VQA answer head: the fused text and image features of GLIP's head -> one logit per answer.

GLIPv2 answers questions with the question as the text input of the fused encoder and a classifier
over the frequent training answers; its exact head was never published. This head is ours:

1. attention pooling over the fused text tokens of the last fusion block: a learnt score per token
   (a linear layer), softmax over the real tokens, a weighted sum -> ``[B, D]``;
2. the mean of the fused visual features over every location of every level -> ``[B, C]``
   (padding locations of smaller images in the batch included, as in the detection head);
3. each projected to ``hidden_dim``, multiplied element-wise (the question gates the image, as in
   the bottom-up attention VQA recipe) and concatenated with the projected question, then an MLP
   (Linear, GELU, LayerNorm, dropout, Linear) -> ``[B, num_answers]`` logits.

The logits are trained with a binary cross-entropy on soft scores (`glip.training.vqa_loss`), so
``sigmoid(logit)`` is each answer's score.

Example:
    >>> head = VqaHead(VqaHeadConfig(num_answers=10, hidden_dim=16), text_dim=8, visual_dim=8)
    >>> fused = FusedFeatures(...)  # doctest: +SKIP
    >>> head(fused.text, fused.text_mask, fused.visual).logits.shape  # doctest: +SKIP
    torch.Size([B, 10])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class VqaHeadConfig:
    """Settings of the answer head (every field is ours: GLIPv2 did not publish its head).

    Attributes:
        num_answers: size of the answer vocabulary (3,129 for VQA2.0 with answers kept when they
            are the most common answer of at least 9 training questions; set from the data).
        hidden_dim: width of the projected question and image and of the MLP's inner layer x 2.
        dropout: before the last layer, training only.
        use_visual: also read the pooled fused image features (False: the fused question alone,
            which already attended to the image in every fusion block).
    """

    num_answers: int = 3129
    hidden_dim: int = 512
    dropout: float = 0.1
    use_visual: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VqaHeadConfig":
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown VQA head settings {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**data)


@dataclass
class VqaOutput:
    """logits: [B, num_answers]; text_weights: [B, L] the pooling weights of the question's tokens
    (0 on padding); pooled: [B, hidden_dim * 2] what the MLP reads."""

    logits: torch.Tensor
    text_weights: torch.Tensor
    pooled: torch.Tensor


class VqaHead(nn.Module):
    """See the module docstring.

    Args:
        config: the head's settings.
        text_dim: width D of the fused text features (768 for the official models).
        visual_dim: width C of the fused visual features (the head's channels, 256 officially).
    """

    def __init__(self, config: VqaHeadConfig, text_dim: int, visual_dim: int) -> None:
        super().__init__()
        if config.num_answers < 1 or config.hidden_dim < 1:
            raise ValueError(f"a VQA head needs num_answers and hidden_dim >= 1, got {config}")
        self.config = config
        self.text_dim, self.visual_dim = text_dim, visual_dim
        hidden = config.hidden_dim
        self.token_score = nn.Linear(text_dim, 1)
        self.text_projection = nn.Linear(text_dim, hidden)
        self.visual_projection = nn.Linear(visual_dim, hidden) if config.use_visual else None
        self.classifier = nn.Sequential(
            nn.Linear(2 * hidden, 2 * hidden), nn.GELU(), nn.LayerNorm(2 * hidden), nn.Dropout(config.dropout),
            nn.Linear(2 * hidden, config.num_answers))

    @property
    def num_answers(self) -> int:
        return self.config.num_answers

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, visual: list[torch.Tensor]) -> VqaOutput:
        """text: fused [B, L, D]; text_mask: [B, L] (1 on real tokens); visual: fused levels [B, C, H_l, W_l]."""
        scores = self.token_score(text).squeeze(-1)  # [B, L]
        scores = scores.masked_fill(text_mask == 0, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # [B, L]
        question = torch.einsum("bl,bld->bd", weights, text)  # [B, D]
        question = self.text_projection(question)  # [B, hidden]
        if self.visual_projection is not None:
            flat = torch.cat([level.flatten(2) for level in visual], dim=2)  # [B, C, sum(H_l*W_l)]
            image = self.visual_projection(flat.mean(dim=2))  # [B, hidden]
            joint = question * image  # [B, hidden]
        else:
            joint = question
        pooled = torch.cat([joint, question], dim=-1)  # [B, 2 * hidden]
        return VqaOutput(logits=self.classifier(pooled), text_weights=weights, pooled=pooled)
