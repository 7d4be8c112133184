"""GLIPPredictor.caption: greedy is beam 1, grounded phrases, the length limit, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from caption_model import caption_glip


@pytest.fixture(scope="module")
def predictor():
    from glip.predictor import GLIPPredictor

    return GLIPPredictor(caption_glip(max_tokens=5), device="cpu")


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(2)]


def test_greedy_equals_beam_one_and_batches_agree(predictor, pictures):
    greedy = predictor.caption(pictures)
    batched = predictor.caption(pictures, batch_size=2)
    beam = predictor.caption(pictures, beam=3)
    assert [r.caption for r in greedy] == [r.caption for r in batched]
    assert all((r.width, r.height) == (56, 40) and r.phrases == [] for r in greedy + beam)
    assert all(r.caption for r in greedy if r.truncated)  # cut off at 5 word pieces: never empty
    short = predictor.caption(pictures[0], max_tokens=1)[0]
    assert short.truncated and len(short.caption.split()) <= 1
    assert set(greedy[0].to_dict()) == {"image", "width", "height", "caption", "phrases", "truncated"}


def test_grounded_phrases_have_spans_boxes_and_scores(predictor, pictures, monkeypatch):
    import glip.captioner as captioner

    # a fixed caption, so that the noun phrases are known whatever the random model says
    monkeypatch.setattr(captioner, "decode_caption", lambda tokenizer, ids: "a red star above a blue ring")
    result = predictor.caption(pictures[0], grounded=True)[0]
    assert [p.phrase for p in result.phrases] == ["a red star", "a blue ring"]
    assert [p.span for p in result.phrases] == [[0, 10], [17, 28]]
    for phrase in result.phrases:
        assert phrase.bbox_xyxy is None or (len(phrase.bbox_xyxy) == 4 and 0 <= phrase.score <= 1)


def test_errors(predictor, pictures):
    from glip.config import get_config
    from glip.modeling.glip import GLIP
    from glip.predictor import GLIPPredictor

    with pytest.raises(ValueError, match="no caption head.*glip caption-train"):
        GLIPPredictor(GLIP(get_config("glip-tiny")), device="cpu").caption(pictures[0])
    with pytest.raises(ValueError, match=r"max_tokens must be a whole number within 1..5"):
        predictor.caption(pictures[0], max_tokens=6)
    with pytest.raises(ValueError, match="beam must be"):
        predictor.caption(pictures[0], beam=0)
