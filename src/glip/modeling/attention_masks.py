"""Additive attention masks over text tokens: padding only, or padding plus causality.

A causal mask lets token t attend to tokens 0..t only, so that its features depend on no later
token: what next-token prediction (captioning) needs, in training and in generation alike.
"""

from __future__ import annotations

import torch


def text_attention_mask(mask: torch.Tensor, dtype: torch.dtype, causal: bool = False) -> torch.Tensor:
    """mask: [B, L] (1 = real token) -> additive mask, 0 where attention is allowed and the dtype's
    minimum elsewhere: [B, 1, 1, L] (padding keys masked), or with ``causal`` [B, 1, L, L] (also
    every key after the query). A query always sees key 0 ([CLS]), so no row is fully masked.

    Example:
        >>> text_attention_mask(torch.tensor([[1, 1, 0]]), torch.float32, causal=True)[0, 0].eq(0).int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [1, 1, 0]], dtype=torch.int32)
    """
    allowed = mask[:, None, None, :].bool()  # [B, 1, 1, L]
    if causal:
        length = mask.shape[1]
        lower = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()  # [L (query), L (key)]
        allowed = allowed & lower[None, None]  # [B, 1, L, L]
    zeros = torch.zeros(allowed.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~allowed, torch.finfo(dtype).min)
