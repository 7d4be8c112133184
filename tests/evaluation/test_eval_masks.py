"""Mask AP beside box AP: perfect and shifted masks, predictions without masks, bad masks, pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from eval_helpers import coco, det

from glip.data.masks import decode_segmentation, mask_to_rle
from glip.evaluation import (DetectionProtocol, EvaluationError, check_detection_predictions,
                             compute_detection_metrics, detection_dataset_from_coco, to_markdown)
from glip.evaluation.cli import main

SIZE = (100, 100)
A, B, C = [10, 10, 30, 30], [50, 50, 30, 30], [20, 60, 20, 30]


def _triangle(box: list[float]) -> list[list[float]]:
    """A triangle filling half of ``box`` (x, y, w, h): its mask is not its box."""
    x, y, w, h = box
    return [[x, y, x + w, y + h, x, y + h]]


def ground_truth() -> dict:
    gt = coco([1, 2], [(1, 1, A), (1, 2, B), (2, 1, C)], size=SIZE)
    for annotation in gt["annotations"]:
        annotation["segmentation"] = _triangle(annotation["bbox"])
    disc = np.zeros((100, 100), dtype=bool)  # one ground truth as RLE instead of polygons
    yy, xx = np.mgrid[:100, :100]
    disc[(yy - 75) ** 2 + (xx - 30) ** 2 < 15 ** 2] = True
    gt["annotations"][2].update(segmentation=mask_to_rle(disc), bbox=[15, 60, 30, 30], area=float(disc.sum()))
    return gt


def predictions(gt: dict, shift: int = 0, masks: bool = True) -> list[dict]:
    """One detection per ground truth, its box exact and its mask moved ``shift`` pixels right."""
    records = []
    for annotation in gt["annotations"]:
        record = det(annotation["image_id"], annotation["category_id"], annotation["bbox"], 0.9)
        if masks:
            mask = decode_segmentation(annotation["segmentation"], *SIZE)
            record["segmentation"] = mask_to_rle(np.roll(mask, shift, axis=1))
        records.append(record)
    return records


def evaluate(gt: dict, records: list[dict], protocol: DetectionProtocol | None = None):
    dataset = detection_dataset_from_coco(gt)
    sizes = {i.id: (i.width, i.height) for i in dataset.images}
    checked = check_detection_predictions(records, {i.id for i in dataset.images}, set(dataset.category_ids),
                                          image_sizes=sizes)
    return compute_detection_metrics(dataset, checked, protocol)


def test_perfect_masks_give_mask_ap_1():
    result = evaluate(ground_truth(), predictions(ground_truth()))
    assert result.metrics["AP"] == pytest.approx(1.0)
    assert result.mask_metrics["AP"] == pytest.approx(1.0) and result.mask_metrics["AR@100"] == pytest.approx(1.0)
    assert result.per_category[0]["mask_AP"] == pytest.approx(1.0)
    assert "mask AP" in to_markdown(result)


def test_shifted_masks_lower_mask_ap_only():
    exact = evaluate(ground_truth(), predictions(ground_truth()))
    shifted = evaluate(ground_truth(), predictions(ground_truth(), shift=5))
    assert shifted.metrics == exact.metrics  # the boxes did not move
    assert 0.0 < shifted.mask_metrics["AP"] < 1.0 and shifted.mask_metrics["AP50"] == pytest.approx(1.0)
    further = evaluate(ground_truth(), predictions(ground_truth(), shift=10))
    assert further.mask_metrics["AP"] < shifted.mask_metrics["AP"]


def test_predictions_without_masks_give_box_ap_alone():
    with_masks = evaluate(ground_truth(), predictions(ground_truth(), shift=5))
    boxes_only = evaluate(ground_truth(), predictions(ground_truth(), masks=False))
    assert boxes_only.mask_metrics is None and boxes_only.metrics == with_masks.metrics
    assert all("mask_AP" not in row for row in boxes_only.per_category)
    assert "mask" not in to_markdown(boxes_only) and "mask_metrics" in boxes_only.to_dict()


def test_ground_truth_without_masks_gives_a_note():
    gt = ground_truth()
    del gt["annotations"][1]["segmentation"]
    result = evaluate(gt, predictions(ground_truth()))
    assert result.mask_metrics is None and result.metrics["AP"] == pytest.approx(1.0)
    assert any("1 of the 3 ground-truth boxes have no segmentation" in note for note in result.notes)


def test_equals_pycocotools_segm_run_directly():
    gt = ground_truth()
    rng = np.random.default_rng(0)
    records = predictions(gt, shift=3)
    for record, shift in zip(predictions(gt, shift=-7), (1, 2, 3)):
        records.append(dict(record, score=float(rng.uniform(0.1, 0.8)), category_id=shift % 2 + 1))
    result = evaluate(gt, records)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(gt)
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(copy.deepcopy(records)), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    ours = result.mask_metrics
    expected = {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR@1": stats[6], "AR@100": stats[8]}
    for key, value in expected.items():
        assert ours[key] == pytest.approx(max(value, 0.0), abs=1e-12), key


def test_lvis_mask_ap_uses_the_federated_rules():
    gt = ground_truth()
    for category, frequency in zip(gt["categories"], "rcf"):
        category["frequency"] = frequency
    gt["images"][0].update(neg_category_ids=[3], not_exhaustive_category_ids=[])
    gt["images"][1].update(neg_category_ids=[], not_exhaustive_category_ids=[])
    records = predictions(gt)
    unverified = dict(records[2], category_id=2, score=0.95)  # image 2: dog neither annotated nor negative
    result = evaluate(gt, records + [unverified], DetectionProtocol.lvis())
    assert result.mask_metrics["AP"] == pytest.approx(1.0)  # the unverified detection is dropped
    assert result.mask_metrics["APr"] == pytest.approx(1.0) and result.mask_metrics["APf"] is None


@pytest.mark.parametrize("change, fault", [
    (lambda records: records[0].pop("segmentation"), "missing segmentation (other detections have one)"),
    (lambda records: records[0].update(segmentation=[[1, 2, 3, 4, 5, 6]]), "segmentation that is not COCO RLE"),
    (lambda records: records[0].update(segmentation=mask_to_rle(np.ones((50, 50), dtype=bool))),
     "not the image's [height, width] [100, 100]"),
])
def test_bad_masks_are_one_clear_error(change, fault):
    records = predictions(ground_truth())
    change(records)
    with pytest.raises(EvaluationError) as raised:
        evaluate(ground_truth(), records)
    assert fault in str(raised.value) and "\n" not in str(raised.value)


def test_cli_prints_mask_ap(tmp_path, capsys):
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth()))
    (tmp_path / "preds.json").write_text(json.dumps(predictions(ground_truth())))
    code = main(["--dataset", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "preds.json"),
                 "--out", str(tmp_path / "out"), "--no-plots"])
    out = capsys.readouterr().out
    assert code == 0 and "gt masks: AP 100.0" in out
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["mask_metrics"]["AP"] == pytest.approx(1.0)
