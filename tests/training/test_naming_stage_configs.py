"""The naming-stage configs: each parses, opens with what it starts from and what it produces, and
each differs from the one before by one loss setting and its output folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from glip.training.train_config import load_train_config

ROOT = Path(__file__).resolve().parents[2]
START = "runs/glipv2-nano/model.safetensors"


def test_each_parses_and_names_its_start_and_result() -> None:
    for stem in ("naming-stage", "naming-stage-ce", "naming-stage-phrases", "naming-stage-web"):
        path = ROOT / "configs" / f"{stem}.yaml"
        config = load_train_config(path)
        first, second = path.read_text().splitlines()[:2]
        assert first.startswith(f"# Starts from: {START} ") and second.startswith(f"# Produces: runs/{stem}/")
        assert config.model.init_from == START and config.output.dir == f"runs/{stem}"
        # the detection data's share is doubled by a second det-train split from another seed
        det = [d for d in config.data.datasets if d.type == "coco"]
        assert [d.weight for d in det] == [1.0, 2.0] and len({d.annotations for d in det}) == 2


def test_the_two_differ_by_the_phrase_term_only() -> None:
    plain = load_train_config(ROOT / "configs" / "naming-stage.yaml")
    with_term = load_train_config(ROOT / "configs" / "naming-stage-ce.yaml")
    assert plain.loss.phrase_ce == 0.0 and with_term.loss.phrase_ce == 0.5
    assert dataclasses.replace(with_term, loss=plain.loss, output=plain.output) == plain
    assert "phrase_ce" in with_term.loss_weights() and "phrase_ce" not in plain.loss_weights()


def test_the_phrases_stage_differs_from_the_ce_stage_by_the_candidates_only() -> None:
    over_tokens = load_train_config(ROOT / "configs" / "naming-stage-ce.yaml")
    over_phrases = load_train_config(ROOT / "configs" / "naming-stage-phrases.yaml")
    assert over_tokens.loss.phrase_ce_candidates == "tokens" and over_phrases.loss.phrase_ce_candidates == "phrases"
    assert dataclasses.replace(over_phrases, loss=over_tokens.loss, output=over_tokens.output) == over_tokens


def test_the_web_stage_adds_the_pseudo_labelled_pairs_only() -> None:
    gold = load_train_config(ROOT / "configs" / "naming-stage-phrases.yaml")
    web = load_train_config(ROOT / "configs" / "naming-stage-web.yaml")
    pseudo = [d for d in web.data.datasets if d.type == "pseudo"]
    assert len(pseudo) == 1 and pseudo[0].weight / sum(d.weight for d in web.data.datasets) == 0.25
    assert web.data.datasets[:-1] == gold.data.datasets and web.data.datasets[-1] is pseudo[0]
    assert dataclasses.replace(web, data=gold.data, output=gold.output) == gold


def test_the_text_stage_continues_the_web_stage_with_the_text_encoder_trained() -> None:
    web = load_train_config(ROOT / "configs" / "naming-stage-web.yaml")
    text = load_train_config(ROOT / "configs" / "naming-stage-text.yaml")
    first, second = (ROOT / "configs" / "naming-stage-text.yaml").read_text().splitlines()[:2]
    assert first.startswith("# Starts from: runs/naming-stage-web/model.safetensors ")
    assert second.startswith("# Produces: runs/naming-stage-text/")
    assert text.model.init_from == "runs/naming-stage-web/model.safetensors" and text.output.dir == "runs/naming-stage-text"
    assert "text_encoder" in web.train.freeze and "text_encoder" not in text.train.freeze
    assert web.optim.language_lr == 0.0 and text.optim.language_lr == web.optim.lr / 10
    assert text.data == web.data and text.loss == web.loss and text.train.max_steps == 300
