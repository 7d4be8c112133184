"""The captioning loss: cross-entropy of every next token (teacher forcing).

Position t of the causal pass predicts token t+1; the targets are the caption's tokens after
[CLS], its [SEP] included (the model learns to end), padding excluded. The mean is over the batch's
target tokens, so a long caption weighs more than a short one, as in the usual captioning recipes.

Example:
    >>> logits = torch.zeros(1, 3, 5)  # [B, L, V], uniform
    >>> float(caption_loss(logits, torch.tensor([[1, 2, 3]]), torch.tensor([[1, 1, 1]])))  # log(5)
    1.6094379425048828
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def caption_loss(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """logits [B, L, V] (position t scores token t+1), input_ids / attention_mask [B, L] -> the mean
    next-token cross-entropy (0 with grad when there is no target token)."""
    predictions = logits[:, :-1].flatten(0, 1)  # [B*(L-1), V]
    targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100).flatten()  # [B*(L-1)]
    if not bool((targets != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(predictions.float(), targets, ignore_index=-100)
