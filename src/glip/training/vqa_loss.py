"""The VQA loss: binary cross-entropy of the answer logits against soft scores, as standard for VQA2.0.

Each question's target is a vector over the answer vocabulary holding ``min(#annotators giving the
answer / 3, 1)`` for the answers in the vocabulary and 0 elsewhere
(`glip.data.vqa_answers.AnswerVocabulary.target`). The loss is the element-wise BCE with logits,
summed over the answers and averaged over the questions (the bottom-up attention recipe's
normalisation, which most VQA heads follow: the mean over answers too would shrink the gradient by
the vocabulary's size). It returns one named, unweighted term, ``vqa``.

Example:
    >>> logits = torch.zeros(2, 3)
    >>> targets = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.6, 0.0]])
    >>> round(float(vqa_loss(logits, targets)["vqa"]), 4)  # 3 * log(2) per question
    2.0794
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vqa_loss(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """logits, targets: [B, num_answers] (targets in [0, 1]) -> ``{"vqa": scalar}``; an empty batch gives 0."""
    if logits.shape != targets.shape:
        raise ValueError(f"VQA logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    if logits.shape[0] == 0:
        return {"vqa": logits.new_zeros(())}
    per_answer = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")  # [B, A]
    return {"vqa": per_answer.sum(dim=1).mean()}
