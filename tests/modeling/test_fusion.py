"""The reassociated bi-directional attention equals the official (direct) order: values and gradients
with respect to both inputs and every parameter, with padded text, clamped logits and dropout."""

from __future__ import annotations

import pytest
import torch

from glip.modeling.fusion import BiAttention


def _pair(clamp: float = 50000.0, dropout: float = 0.0) -> tuple[BiAttention, BiAttention]:
    torch.manual_seed(0)
    direct = BiAttention(12, 20, 32, 4, dropout=dropout, clamp=clamp, order="direct").double()
    for parameter in direct.parameters():  # non-zero biases, so the bias terms are exercised
        torch.nn.init.normal_(parameter, std=0.5)
    fast = BiAttention(12, 20, 32, 4, dropout=dropout, clamp=clamp).double()
    fast.load_state_dict(direct.state_dict())
    return direct, fast


def _inputs(scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    visual = (scale * torch.randn(2, 37, 12, generator=generator, dtype=torch.float64)).requires_grad_()
    text = (scale * torch.randn(2, 7, 20, generator=generator, dtype=torch.float64)).requires_grad_()
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0  # second caption: 3 padded tokens
    return visual, text, mask


def _values_and_grads(module: BiAttention, visual, text, mask) -> list[torch.Tensor]:
    delta_visual, delta_text = module(visual, text, mask)
    # weights that differ per element, so every output position reaches the gradients
    loss = (delta_visual * torch.linspace(-1, 2, delta_visual.numel(), dtype=visual.dtype).view_as(delta_visual)).sum()
    loss = loss + (delta_text.sin() * 3).sum()
    names = [name for name, _ in module.named_parameters()]
    grads = torch.autograd.grad(loss, [visual, text, *module.parameters()])
    assert len(grads) == 2 + len(names)
    return [delta_visual, delta_text, *grads]


@pytest.mark.parametrize("scale, clamp", [(1.0, 50000.0), (3.0, 50000.0), (3.0, 20.0)])
def test_reassociated_matches_direct(scale, clamp):
    direct, fast = _pair(clamp=clamp)
    visual, text, mask = _inputs(scale)
    expected = _values_and_grads(direct, visual, text, mask)
    got = _values_and_grads(fast, visual, text, mask)
    for index, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"output/gradient {index} differs")


def test_clamp_is_active_in_the_clamped_case():
    """The clamp=20 case above really clamps (else the test would not cover the clamp)."""
    direct, _ = _pair(clamp=20.0)
    visual, text, mask = _inputs(3.0)
    query = direct.visual_query(visual) * direct.scale
    key = direct.text_key(text)
    logits = torch.einsum("bnhd,blhd->bhnl", query.view(2, 37, 4, 8), key.view(2, 7, 4, 8))
    assert logits.abs().max() > 20.0


def test_padded_tokens_get_no_visual_attention_and_do_not_change_real_outputs():
    _, fast = _pair()
    visual, text, mask = _inputs()
    delta_visual, delta_text = fast(visual, text, mask)
    alone_visual, alone_text = fast(visual[1:], text[1:, :4], mask[1:, :4])
    torch.testing.assert_close(delta_visual[1:], alone_visual, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(delta_text[1:, :4], alone_text, rtol=1e-9, atol=1e-9)


def test_dropped_probabilities_give_the_same_result_in_both_orders(monkeypatch):
    """Dropout breaks the rows-sum-to-one property the text side could lean on; with the same dropped
    entries (one fixed [B, nh, Nv, L] keep-mask per softmax, laid out as each order holds it) the
    two orders agree in values and gradients."""
    direct, fast = _pair(dropout=0.5)
    generator = torch.Generator().manual_seed(7)
    keeps = [torch.rand(2, 4, 37, 7, generator=generator) > 0.5 for _ in range(2)]  # visual, text

    def fixed_dropout(probs, p, training):
        index = fixed_dropout.calls % 2
        fixed_dropout.calls += 1
        keep = keeps[index] if probs.shape[1] == 4 else keeps[index].transpose(1, 2)
        return probs * keep.to(probs.dtype) / (1 - p)

    fixed_dropout.calls = 0
    monkeypatch.setattr("glip.modeling.fusion.F.dropout", fixed_dropout)
    direct.train()
    fast.train()
    visual, text, mask = _inputs()
    expected = _values_and_grads(direct, visual, text, mask)
    got = _values_and_grads(fast, visual, text, mask)
    assert fixed_dropout.calls == 4
    for index, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"output/gradient {index} differs")


def test_causal_mode_gives_the_same_text_side_in_both_orders_and_no_image_side():
    """Causal mode (captioning) drops the image-from-text direction in either order; the text-side
    delta is that of the full attention, and both orders agree on it and on its gradients."""
    direct, fast = _pair()
    visual, text, mask = _inputs()
    full_text = fast(visual, text, mask)[1]
    results = []
    for module in (direct, fast):
        delta_visual, delta_text = module(visual, text, mask, causal=True)
        assert delta_visual is None
        results.append([delta_text, *torch.autograd.grad(delta_text.sin().sum(), [visual, text])])
    torch.testing.assert_close(results[1][0], full_text, rtol=1e-9, atol=1e-9)
    for index, (a, b) in enumerate(zip(results[1], results[0])):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"causal output/gradient {index} differs")


def test_unknown_order_is_refused():
    with pytest.raises(ValueError, match="attention order"):
        BiAttention(8, 8, 16, 2, dropout=0.0, clamp=50000.0, order="fast")
