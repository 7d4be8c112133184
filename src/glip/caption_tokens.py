"""Captions as token ids for the captioning head, and back.

A caption is ``[CLS] w1 .. wn [SEP]`` in the bert-base-uncased word pieces: [CLS] starts every
generation and [SEP] ends it. A caption longer than the limit keeps its first ``max_tokens`` pieces
and no [SEP], so that training never teaches the model to end a sentence in its middle.

Example:
    >>> tokenizer = load_tokenizer()
    >>> encode_caption(tokenizer, "a red star", max_tokens=30)
    [101, 1037, 2417, 2732, 102]
    >>> decode_caption(tokenizer, [1037, 2417, 2732])
    'a red star'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CaptionVocabulary:
    """The special ids decoding needs: start, end, and those never generated."""

    bos_id: int
    eos_id: int
    banned_ids: tuple[int, ...]  # every special token but the end ([PAD], [CLS], [MASK], [UNK])

    @classmethod
    def of(cls, tokenizer) -> "CaptionVocabulary":
        eos = tokenizer.sep_token_id
        return cls(tokenizer.cls_token_id, eos, tuple(sorted(set(tokenizer.all_special_ids) - {eos})))


def encode_caption(tokenizer, caption: str, max_tokens: int) -> list[int]:
    """[CLS] + the caption's word pieces (at most ``max_tokens``) + [SEP] when it fits whole."""
    pieces = tokenizer(caption, add_special_tokens=False)["input_ids"]
    ids = [tokenizer.cls_token_id] + pieces[:max_tokens]
    return ids + [tokenizer.sep_token_id] if len(pieces) <= max_tokens else ids


def decode_caption(tokenizer, token_ids: Sequence[int]) -> str:
    """Generated word pieces (no special tokens) -> the caption text, lower-case."""
    return tokenizer.decode(list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()


def pad_captions(captions: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (input_ids, attention_mask), both [B, longest], padded at the end."""
    width = max(len(ids) for ids in captions)
    input_ids = torch.full((len(captions), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(captions), width), dtype=torch.long)
    for row, ids in enumerate(captions):
        input_ids[row, :len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        attention_mask[row, :len(ids)] = 1
    return input_ids, attention_mask
