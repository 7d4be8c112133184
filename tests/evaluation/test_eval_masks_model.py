"""``glip eval --masks``: the model's mask head runs in the evaluation and mask AP (COCO segm, LVIS)
is reported beside box AP, equal to pycocotools on the predictions written; one-line errors."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pytest
from eval_helpers import coco
from masked_model import save_masked_glip

from glip.data.masks import decode_segmentation
from glip.evaluation.cli import main

SIZE = (80, 60)  # the width and height of the image_folder fixture's images


def _triangle(box: list[float]) -> list[list[float]]:
    x, y, w, h = box
    return [[x, y, x + w, y + h, x, y + h]]


def _ground_truth() -> dict:
    """Two boxes on each of the four images (categories circle/square/star), each with a triangle mask."""
    data = coco([1, 2, 3, 4], [(i, 1 + (i + k) % 3, [5 + 20 * k, 8, 30, 25]) for i in range(1, 5) for k in range(2)],
                [(1, "circle"), (2, "square"), (3, "star")], size=SIZE)
    for annotation in data["annotations"]:
        annotation["segmentation"] = _triangle(annotation["bbox"])
    return data


@pytest.fixture(scope="module")
def masked_checkpoint(tmp_path_factory) -> Path:
    return save_masked_glip(tmp_path_factory.mktemp("masked") / "glip-masked.safetensors", input_sizes=(64, 96))


@pytest.fixture(scope="module")
def mask_files(image_folder, tmp_path_factory) -> dict[str, Path]:
    """COCO and LVIS ground truth with masks for the four images, and the COCO file without masks."""
    folder = tmp_path_factory.mktemp("mask-files")
    coco_gt = _ground_truth()
    lvis_gt = copy.deepcopy(coco_gt)
    for category, frequency in zip(lvis_gt["categories"], "rcf"):
        category["frequency"] = frequency
    for image in lvis_gt["images"]:
        image.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    boxes_only = copy.deepcopy(coco_gt)
    for annotation in boxes_only["annotations"]:
        del annotation["segmentation"]
    files = {"coco": coco_gt, "lvis": lvis_gt, "boxes": boxes_only}
    for name, data in files.items():
        (folder / f"{name}.json").write_text(json.dumps(data))
    return {name: folder / f"{name}.json" for name in files}


def _run(capsys, checkpoint: Path, dataset: Path, images: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["--weights", str(checkpoint), "--dataset", str(dataset), "--images", str(images), "--out", str(out),
                 "--device", "cpu", "--no-progress", "--no-plots", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _pycocotools_segm(ground_truth: dict, predictions: list[dict]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(ground_truth)
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(copy.deepcopy(predictions)), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_mask_ap_beside_box_ap_equals_pycocotools(masked_checkpoint, mask_files, image_folder, tmp_path, capsys):
    code, out, err = _run(capsys, masked_checkpoint, mask_files["coco"], image_folder, tmp_path / "masks",
                          "--masks", "--batch-size", "2")
    assert code == 0, err
    assert "coco masks: AP " in out
    metrics = json.loads((tmp_path / "masks" / "metrics.json").read_text())
    assert metrics["mask_metrics"] is not None and metrics["metrics"]["AP"] is not None
    assert "mask AP" in (tmp_path / "masks" / "report.md").read_text()
    predictions = json.loads((tmp_path / "masks" / "predictions.json").read_text())
    assert predictions and all(p["segmentation"]["size"] == [SIZE[1], SIZE[0]] for p in predictions)
    areas = [int(decode_segmentation(p["segmentation"], SIZE[1], SIZE[0]).sum()) for p in predictions]
    assert max(areas) > 0  # the head's masks, not empty placeholders

    stats = _pycocotools_segm(_ground_truth(), predictions)
    expected = {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR@1": stats[6], "AR@100": stats[8]}
    for key, value in expected.items():
        assert metrics["mask_metrics"][key] == pytest.approx(max(value, 0.0), abs=1e-9), key

    # the mask head changes no detection: the boxes and box AP are those of a run without --masks
    code, _, err = _run(capsys, masked_checkpoint, mask_files["coco"], image_folder, tmp_path / "boxes",
                        "--batch-size", "2")
    assert code == 0, err
    boxes = json.loads((tmp_path / "boxes" / "predictions.json").read_text())
    assert [{k: v for k, v in p.items() if k != "segmentation"} for p in predictions] == boxes
    assert json.loads((tmp_path / "boxes" / "metrics.json").read_text())["metrics"] == metrics["metrics"]


def test_lvis_mask_ap_has_the_frequency_split(masked_checkpoint, mask_files, image_folder, tmp_path, capsys):
    code, out, err = _run(capsys, masked_checkpoint, mask_files["lvis"], image_folder, tmp_path / "lvis", "--masks")
    assert code == 0, err
    metrics = json.loads((tmp_path / "lvis" / "metrics.json").read_text())
    assert metrics["protocol"]["name"] == "lvis"
    assert {"AP", "APr", "APc", "APf"} <= set(metrics["mask_metrics"])
    assert "lvis masks: AP " in out and "APr" in out.split("lvis masks:")[1]
    # the same numbers from the predictions file alone (mask AP of a file that carries masks)
    code = main(["--dataset", str(mask_files["lvis"]), "--predictions", str(tmp_path / "lvis" / "predictions.json"),
                 "--out", str(tmp_path / "again"), "--no-plots"])
    assert code == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["mask_metrics"] == metrics["mask_metrics"]


def test_model_without_mask_head_is_one_line_naming_it(small_checkpoint, mask_files, image_folder, tmp_path,
                                                       capsys):
    code, out, err = _run(capsys, small_checkpoint, mask_files["coco"], image_folder, tmp_path / "o", "--masks")
    assert code == 2 and err.count("\n") == 1 and not out
    assert str(small_checkpoint) in err and "has no mask head" in err
    assert "mask_head.enabled" in err and "leave out --masks" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("case, fault", [
    ("predictions", "--masks runs the model's mask head"),
    ("no ground-truth masks", "no ground-truth box has a 'segmentation'"),
])
def test_other_misuses_are_one_line(case, fault, masked_checkpoint, mask_files, image_folder, tmp_path, capsys):
    if case == "predictions":
        (tmp_path / "p.json").write_text("[]")
        code = main(["--dataset", str(mask_files["coco"]), "--predictions", str(tmp_path / "p.json"), "--masks"])
        err = capsys.readouterr().err
    else:
        code, _, err = _run(capsys, masked_checkpoint, mask_files["boxes"], image_folder, tmp_path / "o", "--masks")
    assert code == 2 and err.count("\n") == 1 and fault in err


def test_library_checks_the_model_and_the_task(small_predictor, mask_files, image_folder):
    from glip.evaluation import EvaluationError, evaluate

    with pytest.raises(EvaluationError, match="has no mask head"):
        evaluate(mask_files["coco"], small_predictor, images=image_folder, masks=True)
    grounding = {"images": [{"id": 1, "file_name": "1.png", "width": 80, "height": 60, "caption": "a red circle"}],
                 "annotations": [{"id": 1, "image_id": 1, "bbox": [5, 8, 30, 25], "category_id": 1, "iscrowd": 0,
                                  "tokens_positive": [[0, 12]]}],
                 "categories": [{"id": 1, "name": "object"}]}
    path = mask_files["coco"].parent / "grounding.json"
    path.write_text(json.dumps(grounding))
    with pytest.raises(EvaluationError, match="mask AP is for detection data"):
        evaluate(path, small_predictor, images=image_folder, masks=True)
