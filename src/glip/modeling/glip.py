"""The GLIP detector: Swin + FPN image features, BERT text features, the fused dense head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from glip.config import GLIPConfig
from glip.modeling.anchors import level_anchors
from glip.modeling.caption_head import CaptionHead
from glip.modeling.fpn import FPN
from glip.modeling.head import HeadOutput, VLHead
from glip.modeling.mask_head import LanguageAwareMaskHead
from glip.modeling.pretraining_heads import PretrainingHeads
from glip.modeling.swin import SwinBackbone
from glip.modeling.text_encoder import TextEncoder, TextFeatures


@dataclass
class ImageFeatures:
    """What the image side computes once per image, whatever the prompt: backbone stages (all four,
    strides 4..32) and the FPN levels P3..P7, each [B, C, H, W]."""

    stages: list[torch.Tensor]
    levels: list[torch.Tensor]

    def select(self, rows: torch.Tensor, stages: bool = True) -> "ImageFeatures":
        """The features of images ``rows`` ([N] int64, repeats allowed), each [N, C, H, W];
        ``stages=False`` leaves the backbone stages out (for a use that reads the FPN levels only)."""
        rows = rows.to(self.levels[0].device)
        return ImageFeatures(stages=[stage[rows] for stage in self.stages] if stages else [],
                             levels=[level[rows] for level in self.levels])


@dataclass
class GLIPOutput:
    image: ImageFeatures
    text: TextFeatures
    head: HeadOutput
    anchors: list[torch.Tensor]  # per level [H_l*W_l, 4] xyxy in network-input pixels


@dataclass
class FusedFeatures:
    """Image and text after every fusion block of the head, before any prediction layer: what the
    understanding heads (VQA, captioning) read.

    Attributes:
        visual: per level P3..P7, the fused visual features [B, C, H_l, W_l] (after the last block).
        text: the fused text features [B, L, D] (after the last block's fusion and text layer).
        text_mask: [B, L] 1 on real tokens (incl. [CLS]/[SEP]), 0 on padding.
        image: the image side's features (backbone stages, FPN levels), reusable across prompts.
    """

    visual: list[torch.Tensor]
    text: torch.Tensor
    text_mask: torch.Tensor
    image: ImageFeatures


class GLIP(nn.Module):
    def __init__(self, config: GLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = SwinBackbone(config.swin)
        self.fpn = FPN(self.backbone.out_channels, config.fpn.out_channels)
        self.text_encoder = TextEncoder(config.text)
        if config.head.channels != config.fpn.out_channels:
            raise ValueError("head.channels must equal fpn.out_channels")
        text = config.text
        self.head = VLHead(config.head, text.hidden_size, text.num_heads, text.intermediate_size,
                           text.layer_norm_eps, text.dropout, skip_channels=config.swin.embed_dim)
        # Prompt tuning (optional): a [max_length, D] tensor added to the text features before the
        # head; zero-initialised so that enabling it changes nothing until it is trained.
        self.prompt_embedding: nn.Parameter | None = None
        # GLIPv2's pre-training heads (training losses only; forward never calls them): built only
        # when the config enables them, so other models keep exactly their parameters.
        self.pretraining_heads: PretrainingHeads | None = None
        if config.pretraining.enabled:
            self.pretraining_heads = PretrainingHeads(config.pretraining, config.head.channels, text.hidden_size,
                                                      text.vocab_size, text.layer_norm_eps)
        # GLIPv2's language-aware mask head (forward never calls it: the mask loss and the predictor
        # do, on HeadOutput.visual/text): built only when enabled, like the pre-training heads.
        self.mask_head: LanguageAwareMaskHead | None = None
        if config.mask_head.enabled:
            self.mask_head = LanguageAwareMaskHead(config.mask_head, config.head.channels, text.hidden_size)
        # The captioning head (`glip.modeling.caption_head`; forward never calls it): built only when
        # enabled. It reads the text side of the fusion, so it needs fusion.
        self.caption_head: CaptionHead | None = None
        if config.caption.enabled:
            if not config.head.use_fusion:
                raise ValueError("caption.enabled needs a model with fusion (head.use_fusion): without it the text "
                                 "never sees the image")
            if not 1 <= config.caption.max_tokens <= text.max_length - 2:
                raise ValueError(f"caption.max_tokens must be within 1..{text.max_length - 2} (text.max_length - 2), "
                                 f"got {config.caption.max_tokens}")
            self.caption_head = CaptionHead(config.caption, text.hidden_size, text.vocab_size, text.layer_norm_eps)

    def enable_prompt_embedding(self, rows: int = 1000) -> nn.Parameter:
        if self.prompt_embedding is None:
            device = self.head.bias_lang.device
            self.prompt_embedding = nn.Parameter(torch.zeros(rows, self.config.text.hidden_size, device=device))
        return self.prompt_embedding

    def encode_images(self, images: torch.Tensor) -> ImageFeatures:
        """images: [B, 3, H, W] normalised BGR, padded to multiples of 32."""
        stages = self.backbone(images)
        selected = [stages[i] for i in self.config.swin.out_stages]
        return ImageFeatures(stages=stages, levels=self.fpn(selected))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, causal: bool = False) -> TextFeatures:
        """input_ids, attention_mask: [B, L]. ``causal``: token t sees tokens 0..t only (captioning)."""
        text = self.text_encoder(input_ids, attention_mask, causal=causal)
        if self.prompt_embedding is not None:
            delta = self.prompt_embedding[: input_ids.shape[1]].unsqueeze(0)  # [1, L, D]
            text = TextFeatures(hidden=text.hidden + delta, mask=text.mask, embedded=text.embedded + delta)
        return text

    def anchors(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        shapes = [tuple(level.shape[-2:]) for level in levels]
        head = self.config.head
        return level_anchors(head.anchor_sizes, head.anchor_strides, shapes, levels[0].device)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                image_features: ImageFeatures | None = None) -> GLIPOutput:
        """Run the whole network. ``image_features`` may be passed to reuse the image side (several
        prompt chunks for the same images); then ``images`` is not looked at."""
        if image_features is None:
            image_features = self.encode_images(images)
        batch = image_features.levels[0].shape[0]
        if input_ids.shape[0] == 1 and batch > 1:
            input_ids = input_ids.expand(batch, -1)
            attention_mask = attention_mask.expand(batch, -1)
        text = self.encode_text(input_ids, attention_mask)
        # alignment_skip: the first stage keeps what the deeper ones drop (colour, fill)
        first = image_features.stages[0] if self.config.head.alignment_skip else None  # [B, embed_dim, H/4, W/4]
        head = self.head(image_features.levels, text, first)
        return GLIPOutput(image=image_features, text=text, head=head, anchors=self.anchors(image_features.levels))

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       image_features: ImageFeatures | None = None) -> FusedFeatures:
        """Image + tokens -> the fused visual and text features of the head's last block, without
        the detection outputs (box regression, centerness, token logits).

        Args:
            images: [B, 3, H, W] normalised BGR, padded to multiples of 32 (not looked at when
                ``image_features`` is given).
            input_ids, attention_mask: [B, L], or [1, L] for one text shared by every image.
            image_features: the image side of ``images``, to reuse across several texts.
        """
        if image_features is None:
            image_features = self.encode_images(images)
        batch = image_features.levels[0].shape[0]
        if input_ids.shape[0] == 1 and batch > 1:
            input_ids = input_ids.expand(batch, -1)  # [B, L]
            attention_mask = attention_mask.expand(batch, -1)
        text = self.encode_text(input_ids, attention_mask)
        visual, hidden = list(image_features.levels), text.hidden
        for block in self.head.blocks:
            visual, hidden = block(visual, hidden, text.mask)
        return FusedFeatures(visual=visual, text=hidden, text_mask=text.mask, image=image_features)
