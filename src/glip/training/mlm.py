"""GLIPv2's masked language modelling loss: masking of the prompt and the loss on its predictions.

Masking (official `random_word`, BERT's rule): each real token of the prompt (never ``[CLS]``,
``[SEP]``, other special tokens or padding) is chosen with probability ``probability`` (0.15); a
chosen token becomes ``[MASK]`` with probability 0.8, a random vocabulary token with 0.1, and stays
as it is with 0.1. Labels hold the original id at chosen positions and -100 elsewhere. With
``only_positive_spans`` (official ``MLM_LOSS_FOR_ONLY_POSITIVES``, default True) only tokens of
phrases that have a box can be chosen. The trainer masks before the model's forward, so the
grounding losses see the masked prompt, as in the official code. All draws come from the
generator passed in (the step's), so a run and its resume mask alike.

Loss: cross-entropy of the untied LM head's logits (`glip.modeling.pretraining_heads`) on the
fused text features, over the chosen tokens only (mean, as the official ``CrossEntropyLoss``;
exactly 0, still connected to the head, when no token was chosen).

Example:
    >>> masked = mask_tokens(input_ids, attention_mask, generator=torch.Generator().manual_seed(0),
    ...                      mask_token_id=103, vocab_size=30522, special_ids=[0, 101, 102])  # doctest: +SKIP
    >>> loss = mlm_loss(model.pretraining_heads.mlm(output.head.text), masked.labels)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # labels of the tokens that are not predicted (PyTorch's cross-entropy default)
MASK_FRACTION = 0.8  # of the chosen tokens: [MASK]
RANDOM_FRACTION = 0.1  # a random vocabulary token; the remaining 0.1 stay unchanged


@dataclass
class MaskedTokens:
    """input_ids: ``[B, L]`` the prompt with chosen tokens replaced; labels: ``[B, L]`` the
    original id at chosen positions, ``IGNORE_INDEX`` elsewhere."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def positive_token_mask(targets: list[dict], length: int) -> torch.Tensor:
    """[B, L] bool: the tokens of the phrases that have a box (the union of each image's
    ``positive_map`` rows)."""
    rows = [target["positive_map"].reshape(-1, length).cpu() > 0 for target in targets]
    return torch.stack([row.any(dim=0) for row in rows])


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, generator: torch.Generator,
                mask_token_id: int, vocab_size: int, special_ids: Iterable[int], probability: float = 0.15,
                allowed: torch.Tensor | None = None) -> MaskedTokens:
    """BERT masking of a batch of prompts.

    Args:
        input_ids, attention_mask: ``[B, L]``.
        generator: a CPU generator (the step's); every draw comes from it.
        mask_token_id: the ``[MASK]`` id (103 in the bert-base-uncased vocabulary).
        vocab_size: random replacements are drawn from ``0..vocab_size - 1``.
        special_ids: ids never chosen (``[CLS]``, ``[SEP]``, ``[PAD]``, ...).
        probability: of choosing each eligible token (official 0.15).
        allowed: ``[B, L]`` bool, eligible positions (e.g. `positive_token_mask`); None = all real tokens.
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"the masking probability must be in (0, 1), got {probability}")
    ids = input_ids.cpu()
    eligible = attention_mask.cpu() > 0  # [B, L]
    eligible &= ~torch.isin(ids, torch.tensor(sorted(set(special_ids)), dtype=ids.dtype))
    if allowed is not None:
        eligible &= allowed.cpu().bool()
    chosen = eligible & (torch.rand(ids.shape, generator=generator) < probability)  # [B, L]
    kind = torch.rand(ids.shape, generator=generator)  # [B, L]: < 0.8 mask, < 0.9 random, else keep
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator, dtype=ids.dtype)
    masked = torch.where(chosen & (kind < MASK_FRACTION), torch.full_like(ids, mask_token_id), ids)
    masked = torch.where(chosen & (kind >= MASK_FRACTION) & (kind < MASK_FRACTION + RANDOM_FRACTION),
                         random_ids, masked)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return MaskedTokens(input_ids=masked.to(input_ids.device), labels=labels.to(input_ids.device))


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the chosen tokens: logits ``[B, L, V]``, labels ``[B, L]`` (``IGNORE_INDEX``
    elsewhere) -> scalar; 0 (connected to ``logits``) when no token was chosen."""
    chosen = labels != IGNORE_INDEX  # [B, L]
    if not bool(chosen.any()):
        return logits.sum() * 0.0  # keeps every head parameter in the graph (DDP expects their gradients)
    return F.cross_entropy(logits[chosen].float(), labels[chosen])
