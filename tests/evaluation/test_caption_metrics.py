"""Captioning metrics: BLEU-4 and CIDEr-D equal pycocoevalcap's own scorers on tokenised text."""

from __future__ import annotations

import builtins
import json

import pytest

from glip.evaluation.caption_metrics import (CAPTION_EXTRA, caption_scores, evaluate_captions, ptb_tokenize,
                                             read_caption_predictions)
from glip.evaluation.common import EvaluationError

pytest.importorskip("pycocoevalcap", reason='needs the caption extra: pip install "glip[caption]"')

REFERENCES = {
    1: ["A red star above a blue ring.", "there is a red star and a blue ring", "a star above a ring"],
    2: ["two green squares", "we can see two squares.", "two small green squares"],
    3: ["a large white hexagon to the left of a black cross", "a hexagon and a cross"],
}


@pytest.mark.parametrize("text, tokens", [
    ("A red star, above the ring.", "a red star above the ring"),
    ("It's big!", "it 's big"),
    ("I don't see (two) \"stars\"...", "i do n't see two stars"),
    ("3.5 or 1,000 well-known shapes; ok?", "3.5 or 1,000 well-known shapes ok"),
])
def test_tokenizer_like_the_ptb_tokenizer(text, tokens):
    assert ptb_tokenize(text) == tokens


def test_identical_captions_score_one():
    references = {1: ["a red star above a blue ring"], 2: ["there are two green squares"]}
    scores = caption_scores(references, {1: "A red star above a blue ring.", 2: "there are two green squares"})
    assert scores.bleu4 == pytest.approx(1.0, abs=1e-6)
    assert scores.per_image_bleu4 == pytest.approx({1: 1.0, 2: 1.0}, abs=1e-6)


def test_equal_to_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    candidates = {1: "a red star above a ring", 2: "two green squares", 3: "a white hexagon and a cross"}
    scores = caption_scores(REFERENCES, candidates)
    gts = {k: [ptb_tokenize(c) for c in v] for k, v in REFERENCES.items()}
    res = {k: [ptb_tokenize(c)] for k, c in candidates.items()}
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_per_image = Cider().compute_score(gts, res)
    assert scores.bleu4 == bleu[3] and scores.cider == cider
    assert list(scores.per_image_cider.values()) == list(cider_per_image)
    assert list(scores.per_image_bleu4.values()) == bleu_per_image[3]
    assert 0 < scores.bleu4 < 1 and 0 < scores.cider
    worse = caption_scores(REFERENCES, candidates | {2: "a purple circle"})
    assert worse.cider < scores.cider and worse.per_image_cider[2] == 0.0


def test_records_and_errors(tmp_path):
    from glip.data.captions import CaptionRecord

    records = [CaptionRecord(1, tmp_path / "a.png", ("a red star",)), CaptionRecord(2, tmp_path / "b.png", ("a ring",))]
    assert evaluate_captions(records, {1: "a red star", 2: "a ring"}).to_dict()["images"] == 2
    with pytest.raises(EvaluationError,
                       match=r"image without predicted caption \(2\).*prediction of an unknown image \(7\)"):
        evaluate_captions(records, {1: "a red star", 7: "x"})
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"image_id": 1, "caption": "a star"}, {"image_id": 1, "caption": "a ring"}]))
    with pytest.raises(EvaluationError, match=r"results.json: 1 record with a duplicate image id \(1\)"):
        read_caption_predictions(path)
    path.write_text(json.dumps([{"image_id": 1, "caption": "a star"}]))
    assert read_caption_predictions(path) == {1: "a star"}


def test_missing_extra_is_one_line(monkeypatch):
    real_import = builtins.__import__

    def without_pycocoevalcap(name, *args, **kwargs):
        if name.startswith("pycocoevalcap"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_pycocoevalcap)
    with pytest.raises(ImportError, match=r'^caption metrics need pycocoevalcap: pip install "glip\[caption\]"$'):
        caption_scores({1: ["a star"]}, {1: "a star"})
    assert "glip[caption]" in CAPTION_EXTRA
