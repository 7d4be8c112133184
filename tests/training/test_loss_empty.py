"""The GLIP loss on images without boxes: no positive anchor, so exactly zero box and centerness
terms, a finite token (classification) term, and nothing added to the terms of other images."""

from __future__ import annotations

import math

import pytest
import torch

from glip.config import get_config
from glip.modeling.glip import GLIP, GLIPOutput
from glip.prompts import build_class_prompt, tokenize_prompt
from glip.training.loss import DEFAULT_WEIGHTS, GLIPLoss

SIZE = 64  # input pixels (glip-tiny: anchors of 64 px at stride 8 and up)


@pytest.fixture(scope="module")
def model() -> GLIP:
    torch.manual_seed(0)
    return GLIP(get_config("glip-tiny")).eval()


@pytest.fixture(scope="module")
def tokens():
    return tokenize_prompt(build_class_prompt(["circle", "square"]), max_length=256)


def run(model: GLIP, tokens, images: torch.Tensor) -> GLIPOutput:
    batch = images.shape[0]
    return model(images, tokens.input_ids[None].expand(batch, -1), tokens.attention_mask[None].expand(batch, -1))


def empty_target(tokens) -> dict:
    return {"boxes": torch.zeros((0, 4)), "positive_map": tokens.positive_map_binary[:0]}


def boxed_target(tokens) -> dict:
    # A circle and a square well inside the 64x64 image, each with its phrase's token row.
    return {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0], [30.0, 20.0, 60.0, 56.0]]),
            "positive_map": tokens.positive_map_binary[[0, 1]]}


def test_image_without_boxes_gives_exactly_zero_box_and_centerness_losses(model, tokens) -> None:
    torch.manual_seed(1)
    output = run(model, tokens, torch.randn(1, 3, SIZE, SIZE))
    losses = GLIPLoss()(output, [empty_target(tokens)], tokens.attention_mask[None])
    assert set(losses) == {"token", "box", "centerness"}
    assert losses["box"].item() == 0.0
    assert losses["centerness"].item() == 0.0
    # Every anchor is a negative for every real token: the focal loss is positive and finite.
    assert math.isfinite(losses["token"].item()) and losses["token"].item() > 0
    # The zero terms stay in the graph (one backward for the whole batch) and give zero gradients.
    model.zero_grad()
    sum(DEFAULT_WEIGHTS[name] * value for name, value in losses.items()).backward()
    for parameter in (*model.head.box_regression.parameters(), *model.head.centerness.parameters()):
        assert parameter.grad is not None and not parameter.grad.any()
    assert model.head.text_projection.weight.grad.abs().sum() > 0  # the token term does train


def test_image_without_boxes_adds_nothing_to_the_box_terms_of_the_batch(model, tokens) -> None:
    torch.manual_seed(2)
    images = torch.randn(2, 3, SIZE, SIZE)
    loss = GLIPLoss()
    with torch.no_grad():
        single = run(model, tokens, images[:1])
        alone = loss(single, [boxed_target(tokens)], tokens.attention_mask[None])
        pair = loss(run(model, tokens, images), [boxed_target(tokens), empty_target(tokens)],
                    tokens.attention_mask[None].expand(2, -1))
    _, _, positive = loss.assign(single.anchors, [boxed_target(tokens)])
    assert positive.sum() > 0  # the boxed image does have positives
    # Same positives, same normalisers: the box and centerness terms are those of the boxed image.
    torch.testing.assert_close(pair["box"], alone["box"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(pair["centerness"], alone["centerness"], rtol=1e-5, atol=1e-7)
    assert alone["box"] > 0 and alone["centerness"] > 0
    # The empty image's anchors are all negatives of the token term.
    assert pair["token"] > alone["token"]
