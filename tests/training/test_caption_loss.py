"""The caption term: next-token cross-entropy, [CLS] never a target, padding ignored."""

from __future__ import annotations

import math

import torch

from glip.training.caption_loss import caption_loss


def test_uniform_logits_give_log_vocabulary():
    loss = caption_loss(torch.zeros(2, 4, 10), torch.tensor([[1, 2, 3, 4], [1, 5, 0, 0]]),
                        torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]))
    assert math.isclose(float(loss), math.log(10), rel_tol=1e-6)


def test_position_t_is_scored_on_token_t_plus_one_and_padding_is_ignored():
    ids = torch.tensor([[1, 2, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    logits = torch.full((1, 4, 6), -20.0)
    logits[0, 0, 2] = logits[0, 1, 3] = 20.0  # right predictions of tokens 1 and 2
    logits[0, 2] = torch.randn(6) * 5  # predicts padding: must not count
    assert float(caption_loss(logits, ids, mask)) < 1e-6
    logits[0, 0, 2] = -20.0  # position 0 now uniform over 6 tokens: log 6; position 1 still right: 0
    assert math.isclose(float(caption_loss(logits, ids, mask)), math.log(6) / 2, rel_tol=1e-5)


def test_no_target_token_gives_zero_with_gradient():
    logits = torch.randn(1, 1, 5, requires_grad=True)
    loss = caption_loss(logits, torch.tensor([[1]]), torch.tensor([[1]]))
    loss.backward()
    assert float(loss) == 0.0 and logits.grad is not None
