"""The VQA answer head: the fused text and image features of GLIP's head -> one logit per answer.

GLIPv2 answers questions with the question as the text input of the fused encoder and a classifier
over the frequent training answers; its exact head was never published. This head is ours:

1. attention pooling over the fused text tokens of the last fusion block: a learnt score per token
   (a linear layer), softmax over the real tokens, a weighted sum -> ``[B, D]``;
2. the image's features pooled over every location of every level -> ``[B, hidden_dim]``
   (padding locations of smaller images in the batch included, as in the detection head). Which
   features: ``visual_features="fused"`` (default) the last block's fused features;
   ``"fpn+fused"`` reads at each location the FPN output, layer-normalised over its channels (its
   values are far larger than the fused ones': in glip-nano a standard deviation of 3-65 by level
   against about 1), and the fused features side by side (channels concatenated). The FPN is
   offered because the head's blocks keep what detection needs, not what a question may ask: in
   glip-nano a linear probe reads an object's colour from the FPN output for 78% of objects and
   from the last block for 14% (chance 13%), its fill 63% against 39%, while its shape forms in
   the blocks (32% -> 79%). How the locations are pooled:
   ``visual_pooling="question"`` (default) attends from the pooled question to the locations
   (``attention_heads`` heads of scaled dot products between the projected question and the
   projected locations, softmax over locations; the question picks where to look, as in the
   top-down attention of the bottom-up attention VQA recipe); ``"mean"`` takes the mean of the
   locations, projected (the first head's form: "what colour is the square?" then reads one vector
   of the whole picture);
3. the projected question and image multiplied element-wise (the question gates the image, as in
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


VISUAL_POOLING = ("question", "mean")
VISUAL_FEATURES = ("fused", "fpn+fused")


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
        visual_pooling: "question" (attention from the question to the image's locations) or
            "mean" (every location alike).
        attention_heads: heads of the question's attention ("question" pooling; divides hidden_dim).
        visual_features: "fused" (the fused features alone) or "fpn+fused" (each location's FPN
            output, layer-normalised, and its fused features, concatenated).
    """

    num_answers: int = 3129
    hidden_dim: int = 512
    dropout: float = 0.1
    use_visual: bool = True
    visual_pooling: str = "question"
    attention_heads: int = 4
    visual_features: str = "fused"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VqaHeadConfig":
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown VQA head settings {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        # Heads written before these settings pooled the fused features alone by their mean.
        data = {"visual_pooling": "mean", "visual_features": "fused", **data}
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
        visual_dim: width C of the fused visual features and of the FPN's (the head's channels, 256
            officially); with "fpn+fused" each location has 2C features.
    """

    def __init__(self, config: VqaHeadConfig, text_dim: int, visual_dim: int) -> None:
        super().__init__()
        if config.num_answers < 1 or config.hidden_dim < 1:
            raise ValueError(f"a VQA head needs num_answers and hidden_dim >= 1, got {config}")
        if config.visual_pooling not in VISUAL_POOLING:
            raise ValueError(f"visual_pooling must be one of {', '.join(VISUAL_POOLING)}, got {config.visual_pooling!r}")
        if config.visual_features not in VISUAL_FEATURES:
            raise ValueError(f"visual_features must be one of {', '.join(VISUAL_FEATURES)}, "
                             f"got {config.visual_features!r}")
        if config.attention_heads < 1 or config.hidden_dim % config.attention_heads:
            raise ValueError(f"attention_heads ({config.attention_heads}) must divide hidden_dim ({config.hidden_dim})")
        self.config = config
        self.text_dim, self.visual_dim = text_dim, visual_dim
        hidden = config.hidden_dim
        location_dim = visual_dim * (2 if self.reads_fpn else 1)
        self.fpn_norm = nn.LayerNorm(visual_dim) if self.reads_fpn else None
        self.token_score = nn.Linear(text_dim, 1)
        self.text_projection = nn.Linear(text_dim, hidden)
        self.visual_projection = nn.Linear(location_dim, hidden) if config.use_visual else None
        attends = config.use_visual and config.visual_pooling == "question"
        self.visual_key = nn.Linear(location_dim, hidden) if attends else None
        self.classifier = nn.Sequential(
            nn.Linear(2 * hidden, 2 * hidden), nn.GELU(), nn.LayerNorm(2 * hidden), nn.Dropout(config.dropout),
            nn.Linear(2 * hidden, config.num_answers))

    @property
    def num_answers(self) -> int:
        return self.config.num_answers

    @property
    def reads_fpn(self) -> bool:
        """Whether `forward` needs the FPN levels (``image``) beside the fused ones."""
        return self.config.use_visual and self.config.visual_features == "fpn+fused"

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, visual: list[torch.Tensor],
                image: list[torch.Tensor] | None = None) -> VqaOutput:
        """text: fused [B, L, D]; text_mask: [B, L] (1 on real tokens); visual: fused levels
        [B, C, H_l, W_l]; image: the FPN levels the fusion started from, same shapes (needed when
        `reads_fpn`; ``FusedFeatures.image.levels``)."""
        if self.reads_fpn:
            if image is None:
                raise ValueError("this VQA head reads the FPN levels beside the fused ones: pass image=fused.image.levels")
            visual = [torch.cat([self._normalise(fpn), fused], dim=1) for fpn, fused in zip(image, visual)]
        scores = self.token_score(text).squeeze(-1)  # [B, L]
        scores = scores.masked_fill(text_mask == 0, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # [B, L]
        question = torch.einsum("bl,bld->bd", weights, text)  # [B, D]
        question = self.text_projection(question)  # [B, hidden]
        if self.visual_projection is not None:
            flat = torch.cat([level.flatten(2) for level in visual], dim=2)  # [B, C', N = sum(H_l*W_l)]
            image = self._attend(question, flat.transpose(1, 2)) if self.visual_key is not None \
                else self.visual_projection(flat.mean(dim=2))  # [B, hidden]
            joint = question * image  # [B, hidden]
        else:
            joint = question
        pooled = torch.cat([joint, question], dim=-1)  # [B, 2 * hidden]
        return VqaOutput(logits=self.classifier(pooled), text_weights=weights, pooled=pooled)

    def _normalise(self, level: torch.Tensor) -> torch.Tensor:
        """An FPN level [B, C, H, W], each location layer-normalised over its C channels."""
        return self.fpn_norm(level.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # [B, C, H, W]

    def _attend(self, question: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        """question: [B, hidden]; locations: [B, N, C'] -> [B, hidden], each head a softmax over N."""
        batch, count, _ = locations.shape
        heads = self.config.attention_heads
        keys = self.visual_key(locations).reshape(batch, count, heads, -1)  # [B, N, h, d]
        values = self.visual_projection(locations).reshape(batch, count, heads, -1)  # [B, N, h, d]
        query = question.reshape(batch, heads, -1)  # [B, h, d]
        scores = torch.einsum("bnhd,bhd->bhn", keys, query) / keys.shape[-1] ** 0.5  # [B, h, N]
        return torch.einsum("bhn,bnhd->bhd", scores.softmax(dim=-1), values).reshape(batch, -1)
