"""Pseudo-label quality: hand-made label records scored against hand-made truth."""

from __future__ import annotations

import json

import pytest

from glip.shapes.cli import main
from glip.shapes.generate import generate_split
from glip.shapes.pseudo_quality import read_label_records, read_truth, score_pseudo_labels

CAPTION = "a red ellipse to the left of a blue star and two rings"


def span(text: str) -> list[int]:
    return [CAPTION.index(text), CAPTION.index(text) + len(text)]


ELLIPSE, STAR, RINGS, THE_LEFT = span("a red ellipse"), span("a blue star"), span("two rings"), span("the left")


def truth_region(bbox: list[float], span: list[int], shape: str, kind: str) -> dict:
    return {"bbox": bbox, "phrase": CAPTION[span[0]:span[1]], "tokens_positive": [span], "shape": shape, "kind": kind}


def truth_record(key: str, caption: str = CAPTION) -> dict:
    regions = [truth_region([10, 10, 50, 40], ELLIPSE, "ellipse", "novel"),
               truth_region([60, 10, 100, 50], STAR, "star", "trained"),
               truth_region([0, 60, 30, 90], RINGS, "ring", "trained"),
               truth_region([40, 60, 70, 90], RINGS, "ring", "trained")]
    return {"key": key, "image_id": int(key), "filename": f"images/{key}.jpg", "height": 100, "width": 100,
            "grounding": {"caption": caption, "regions": regions}}


def pseudo(bbox: list[float], span: list[int], score: float) -> dict:
    return {"bbox": bbox, "phrase": CAPTION[span[0]:span[1]], "tokens_positive": [span], "score": score}


def label_record(key: str, regions: list[dict], filename: str | None = None) -> dict:
    return {"filename": filename or f"/data/web/images/{key}.jpg", "height": 100, "width": 100, "key": key,
            "shard": "pairs", "grounding": {"caption": CAPTION, "regions": regions}}


@pytest.fixture
def truth() -> dict[str, dict]:
    return {key: truth_record(key) for key in ("000001", "000002", "000003")}


def test_precision_and_recall_by_phrase_kind(truth):
    records = [label_record("000001", [
        pseudo([11, 10, 50, 41], ELLIPSE, 0.9),        # novel: hit (IoU 0.95)
        pseudo([12, 11, 49, 40], ELLIPSE, 0.6),        # novel: duplicate of a matched box, a false positive
        pseudo([10, 10, 50, 40], STAR, 0.7),           # trained: the ellipse's box under the star's phrase
        pseudo([0, 60, 30, 90], span("rings"), 0.8),  # "rings" alone: grounds "two rings", hit
        pseudo([40, 60, 70, 90], RINGS, 0.55),         # hit
        pseudo([60, 10, 100, 50], THE_LEFT, 0.6),      # "the left": other
    ])]
    quality = score_pseudo_labels(records, truth, labelled_only=True)
    assert quality.truth_records == 1 and quality.labelled_records == 1
    novel, trained, other = (quality.kinds[kind] for kind in ("novel", "trained", "other"))
    assert (novel.pseudo_boxes, novel.truth_boxes, novel.true_positives) == (2, 1, 1)
    assert (novel.precision, novel.recall) == (0.5, 1.0)
    assert (trained.pseudo_boxes, trained.truth_boxes, trained.true_positives) == (3, 3, 2)
    assert other.pseudo_boxes == 1 and other.precision == 0.0 and other.recall is None
    assert quality.total.pseudo_boxes == 6 and quality.total.true_positives == 3
    assert quality.shapes["star"].recall == 0.0 and quality.shapes["ring"].recall == 1.0
    assert (quality.exact_spans, quality.partial_spans) == (3, 1)  # distinct spans: ellipse, star, rings | "rings"


def test_recall_counts_pairs_the_labeller_dropped_unless_asked(truth):
    records = [label_record("000001", [pseudo([10, 10, 50, 40], ELLIPSE, 0.9)])]
    everything = score_pseudo_labels(records, truth)
    assert everything.truth_records == 3 and everything.kinds["novel"].recall == pytest.approx(1 / 3)
    assert score_pseudo_labels(records, truth, labelled_only=True).kinds["novel"].recall == 1.0


def test_iou_threshold_and_min_score(truth):
    box = [10, 10, 30, 40]  # half the true ellipse box: IoU 0.5 exactly
    records = [label_record("000001", [pseudo(box, ELLIPSE, 0.4)])]
    assert score_pseudo_labels(records, truth, iou_threshold=0.5).kinds["novel"].true_positives == 1
    assert score_pseudo_labels(records, truth, iou_threshold=0.51).kinds["novel"].true_positives == 0
    stricter = score_pseudo_labels(records, truth, min_score=0.5)
    assert stricter.kinds["novel"].pseudo_boxes == 0 and stricter.kinds["novel"].truth_boxes == 3


def test_records_match_truth_by_key_then_file_stem_and_same_caption(truth):
    by_stem = label_record("7", [pseudo([10, 10, 50, 40], ELLIPSE, 0.9)], filename="shards/web-000000.tar#000002")
    wrong_caption = label_record("000003", [pseudo([10, 10, 50, 40], ELLIPSE, 0.9)])
    wrong_caption["grounding"]["caption"] = "a red ellipse"
    line_number = label_record("1", [pseudo([10, 10, 50, 40], ELLIPSE, 0.9)], filename="/data/web/images/000001.jpg")
    quality = score_pseudo_labels([by_stem, wrong_caption, line_number], truth)
    assert quality.labelled_records == 2 and quality.unmatched_records == ["000003"]
    assert quality.kinds["novel"].true_positives == 2
    with pytest.raises(ValueError, match="labelled twice"):
        score_pseudo_labels([by_stem, label_record("000002", [])], truth)
    with pytest.raises(ValueError, match="matches a truth record"):
        score_pseudo_labels([wrong_caption], truth)


def test_cli_reads_a_label_folder_prints_the_table_and_writes_json(tmp_path, truth, capsys):
    (tmp_path / "truth.jsonl").write_text("".join(json.dumps(record) + "\n" for record in truth.values()))
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "pairs.jsonl").write_text(json.dumps(label_record("000001", [pseudo([10, 10, 50, 40], ELLIPSE, 0.9)]))
                                        + "\n")
    (labels / "errors.jsonl").write_text(json.dumps({"shard": "pairs", "key": "000009", "reason": "bad"}) + "\n")
    (labels / "manifest.json").write_text("{}")
    out = tmp_path / "quality.json"
    assert main(["pseudo-quality", "--labels", str(labels), "--truth", str(tmp_path / "truth.jsonl"),
                 "--out", str(out), "--labelled-only"]) == 0
    printed = capsys.readouterr().out
    assert "| novel shape | 1 | 1 | 1 | 1.000 | 1.000 |" in printed
    assert "| trained shape | 0 | 3 | 0 | - | 0.000 |" in printed
    written = json.loads(out.read_text())
    assert written["kinds"]["novel"]["precision"] == 1.0 and written["labelled_records"] == 1
    assert main(["pseudo-quality", "--labels", str(tmp_path / "nope"), "--truth", str(tmp_path / "truth.jsonl"),
                 "--out", str(out)]) == 2
    assert main(["pseudo-quality", "--labels", str(labels), "--truth", str(labels / "pairs.jsonl"),
                 "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "not found" in errors[0] and "truth.jsonl of a web split" in errors[1]
    # An earlier result is replaced; a user's other file is not, unless --overwrite.
    args = ["pseudo-quality", "--labels", str(labels), "--truth", str(tmp_path / "truth.jsonl"), "--labelled-only"]
    assert main(args + ["--out", str(out)]) == 0
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    assert main(args + ["--out", str(notes)]) == 2
    assert notes.read_text() == '{"mine": 1}'
    assert "not an earlier result" in capsys.readouterr().err
    assert main(args + ["--out", str(notes), "--overwrite"]) == 0
    assert json.loads(notes.read_text())["labelled_records"] == 1


def test_a_perfect_labeller_scores_one_on_a_generated_web_split(tmp_path):
    split_dir = generate_split(tmp_path, "web", 12, seed=4, image_size=128)
    truth = read_truth(split_dir / "truth" / "truth.jsonl")
    labels = tmp_path / "labels"
    labels.mkdir()
    records = [{"filename": record["filename"], "key": record["key"], "shard": "pairs",
                "grounding": {"caption": record["grounding"]["caption"],
                              "regions": [region | {"score": 0.9} for region in record["grounding"]["regions"]]}}
               for record in truth.values()]
    (labels / "pairs.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    quality = score_pseudo_labels(read_label_records([labels]), truth)
    for kind in ("trained", "novel"):
        assert quality.kinds[kind].precision == 1.0 and quality.kinds[kind].recall == 1.0
    assert quality.kinds["novel"].truth_boxes >= 8 and quality.kinds["other"].pseudo_boxes == 0
    assert quality.partial_spans == 0


def test_report_refuses_to_replace_a_file_that_is_not_an_earlier_table(tmp_path, capsys):
    mine = tmp_path / "results.md"
    mine.write_text("# my notes\n")
    assert main(["report", "--data", str(tmp_path), "--model", "m=missing.safetensors", "--out", str(mine)]) == 2
    assert mine.read_text() == "# my notes\n"
    assert "not an earlier result" in capsys.readouterr().err
