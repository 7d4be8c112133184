"""The VQA loss: BCE with logits on soft scores, summed over answers, averaged over questions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from glip.training.vqa_loss import vqa_loss


def test_value_is_the_bce_summed_over_answers_and_averaged_over_questions():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0, 0.3], [0.0, 0.6, 0.0]])
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 2
    assert math.isclose(float(vqa_loss(logits, targets)["vqa"]), float(expected), rel_tol=1e-6)


def test_confident_right_answers_cost_less_than_wrong_ones():
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    right = vqa_loss(torch.tensor([[8.0, -8.0, -8.0]]), targets)["vqa"]
    wrong = vqa_loss(torch.tensor([[-8.0, 8.0, -8.0]]), targets)["vqa"]
    assert float(right) < 0.01 < 10 < float(wrong)


def test_empty_batch_is_zero_and_shapes_must_match():
    assert float(vqa_loss(torch.zeros(0, 4), torch.zeros(0, 4))["vqa"]) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        vqa_loss(torch.zeros(2, 4), torch.zeros(2, 5))
