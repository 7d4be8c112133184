"""Reports: the JSON holds every number, the Markdown the tables, the PNGs exist."""

from __future__ import annotations

import importlib.util
import json
import logging

import pytest
from eval_helpers import coco, det

from glip.evaluation import compute_detection_metrics, detection_dataset_from_coco, to_markdown, write_report
from glip.evaluation.detection_metrics import DetectionProtocol


@pytest.fixture()
def result():
    gt = coco([1], [(1, 1, [10, 10, 20, 20]), (1, 2, [50, 50, 20, 20])], [(1, "cat"), (2, "dog"), (3, "bird")])
    for category, frequency in zip(gt["categories"], "frc"):
        category["frequency"] = frequency
    dataset = detection_dataset_from_coco(gt, name="pets")
    predictions = [det(1, 1, [10, 10, 20, 20], 0.9), det(1, 2, [10, 50, 20, 20], 0.8)]
    return compute_detection_metrics(dataset, predictions, DetectionProtocol.lvis())


def test_json_has_every_number(result, tmp_path):
    written = write_report(result, tmp_path, plots=False)
    data = json.loads(written["json"].read_text())
    assert data["metrics"]["AP"] == pytest.approx(0.5) and data["metrics"]["APf"] == pytest.approx(1.0)
    assert data["metrics"]["APc"] is None  # the only common category has no ground truth
    assert [row["AP"] for row in data["per_category"]] == [pytest.approx(1.0), 0.0, None]
    assert len(data["precision_recall"]["recall"]) == 101
    assert len(data["precision_recall"]["categories"]["1"]["iou50"]) == 101
    assert data["protocol"] == {"name": "lvis", "max_dets": ["all"], "per_image_limit": 300,
                                "per_category_limit": None}
    assert "predictions" not in data


def test_markdown_tables(result):
    text = to_markdown(result)
    assert text.startswith("# Detection: pets (lvis protocol)")
    assert "| 50.0 | 50.0 | 50.0 |" in text
    assert "| APr (rare) | APc (common) | APf (frequent) |" in text
    assert "| 3 | bird | c | 0 | 0 | – | – | – |" in text
    assert "- 1 of 3 categories have no ground truth" in text


def test_plots(result, tmp_path):
    pytest.importorskip("matplotlib")
    written = write_report(result, tmp_path)
    for name in ("pr_curves", "ap_per_category"):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_matplotlib_means_no_plots_and_a_warning(result, tmp_path, monkeypatch, caplog):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with caplog.at_level(logging.WARNING):
        written = write_report(result, tmp_path)
    assert set(written) == {"json", "markdown"}
    assert "matplotlib is not installed" in caplog.text
