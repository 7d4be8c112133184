"""Tests of the ATSS box coder: round trip, the legacy "+1" width convention, the dw/dh clamp."""

from __future__ import annotations

import math

import pytest
import torch

from glip.modeling.box_coder import BoxCoder

ANCHOR = torch.tensor([[-28.0, -28.0, 35.0, 35.0]])  # P3 template: width 64, centre 3.5


def _random_boxes(generator: torch.Generator, count: int, dtype: torch.dtype) -> torch.Tensor:
    """Boxes within [-100, 400]; sizes 8..250 keep every size ratio below the dw clamp (62.5)."""
    corner = torch.rand(count, 2, generator=generator, dtype=dtype) * 250 - 100
    size = torch.rand(count, 2, generator=generator, dtype=dtype) * 242 + 8
    return torch.cat([corner, corner + size], dim=1)  # [N, 4] xyxy


@pytest.mark.parametrize("weights", [(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_encode_decode_round_trip(weights: tuple[float, ...], dtype: torch.dtype, atol: float) -> None:
    generator = torch.Generator().manual_seed(0)
    boxes, anchors = _random_boxes(generator, 500, dtype), _random_boxes(generator, 500, dtype)
    coder = BoxCoder(weights)
    deltas = coder.encode(boxes, anchors)
    assert deltas.shape == (500, 4)
    torch.testing.assert_close(coder.decode(deltas, anchors), boxes, atol=atol, rtol=0)


def test_widths_and_centres_use_the_plus_one_convention() -> None:
    coder = BoxCoder()
    # Same centre (3.5), twice the width: x1 = 3.5 - (128 - 1) / 2 = -60, x2 = 67.
    doubled = torch.tensor([[-60.0, -28.0, 67.0, 35.0]])
    torch.testing.assert_close(coder.encode(doubled, ANCHOR), torch.tensor([[0.0, 0.0, 5 * math.log(2), 0.0]]))
    # Shifting by a tenth of the width (6.4 px) is dx = 10 * 6.4 / 64 = 1.
    shifted = ANCHOR + torch.tensor([[6.4, 0.0, 6.4, 0.0]])
    torch.testing.assert_close(coder.encode(shifted, ANCHOR), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    # (Continuous widths would give 127 / 63 above, not 2.)
    torch.testing.assert_close(coder.encode(ANCHOR, ANCHOR), torch.zeros(1, 4), atol=0, rtol=0)


def test_zero_deltas_decode_to_the_anchor_itself() -> None:
    coder = BoxCoder()
    anchors = torch.tensor([[-28.0, -28.0, 35.0, 35.0], [10.0, 20.0, 30.0, 60.0], [5.0, 5.0, 5.0, 5.0]])
    assert torch.equal(coder.decode(torch.zeros(3, 4), anchors), anchors)


def test_decode_moves_by_whole_anchor_widths() -> None:
    coder = BoxCoder()
    # dx = 10 (one anchor width after the weight 10) moves the 64-wide anchor by 64 px; dh = 5 log 2
    # doubles its height around the same centre: y from 3.5 - 63.5 to 3.5 + 63.5.
    decoded = coder.decode(torch.tensor([[10.0, 0.0, 0.0, 5 * math.log(2)]]), ANCHOR)
    torch.testing.assert_close(decoded, torch.tensor([[36.0, -60.0, 99.0, 67.0]]))


def test_dw_and_dh_are_clamped_at_log_1000_over_16() -> None:
    coder = BoxCoder()
    limit = math.log(1000.0 / 16)
    assert coder.clip == pytest.approx(limit)
    huge = coder.decode(torch.tensor([[0.0, 0.0, 100.0, 1e6]]), ANCHOR)
    at_limit = coder.decode(torch.tensor([[0.0, 0.0, 5 * limit, 5 * limit]]), ANCHOR)
    torch.testing.assert_close(huge, at_limit)
    width = huge[0, 2] - huge[0, 0] + 1
    torch.testing.assert_close(width, torch.tensor(64 * 1000 / 16))  # 62.5 anchor widths, not more
    assert torch.isfinite(huge).all()
    # Just below the limit nothing is clamped, and negative deltas are never clamped.
    below = coder.decode(torch.tensor([[0.0, 0.0, 5 * (limit - 0.5), -50.0]]), ANCHOR)
    torch.testing.assert_close(below[0, 2] - below[0, 0] + 1, torch.tensor(64 * math.exp(limit - 0.5)))
    torch.testing.assert_close(below[0, 3] - below[0, 1] + 1, torch.tensor(64 * math.exp(-10.0)))


def test_decode_follows_the_deltas_dtype() -> None:
    coder = BoxCoder()
    decoded = coder.decode(torch.zeros(1, 4, dtype=torch.float64), ANCHOR)
    assert decoded.dtype == torch.float64
    assert torch.equal(decoded, ANCHOR.double())
