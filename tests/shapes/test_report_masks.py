"""``glip shapes report``: the det-test mask AP row, filled for a model with a mask head, "-" without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from masked_model import save_masked_glip
from support import save_small_glip

from glip.evaluation import evaluate
from glip.shapes.generate import generate_split
from glip.shapes.report import MASK_AP, evaluate_model, markdown_table


@pytest.fixture(scope="module")
def det_test_only(tmp_path_factory) -> Path:
    """A shapes root with only a three-image det-test split (the other splits are skipped)."""
    root = tmp_path_factory.mktemp("shapes-masks")
    generate_split(root, "det-test", 3, seed=0, image_size=96)
    return root


def test_mask_row_for_a_model_with_a_mask_head_and_dash_without(det_test_only, tmp_path):
    masked = save_masked_glip(tmp_path / "masked.safetensors", input_sizes=(64, 96))
    plain = save_small_glip(tmp_path / "plain.safetensors")
    with_head = evaluate_model(masked, det_test_only, progress=False)
    without = evaluate_model(plain, det_test_only, progress=False)
    assert without[MASK_AP] is None and set(without) == {"det-test", "det-test AP50", "det-test naming", MASK_AP}
    assert isinstance(with_head[MASK_AP], float) and 0.0 <= with_head[MASK_AP] <= 1.0

    from glip.predictor import GLIPPredictor

    split = det_test_only / "det-test"
    direct = evaluate(split / "annotations.json", GLIPPredictor.from_pretrained(masked, device="cpu"), images=split,
                      task="detection", masks=True)
    assert with_head[MASK_AP] == pytest.approx(direct.mask_metrics["AP"])
    assert with_head["det-test"] == pytest.approx(direct.metrics["AP"])  # the mask head changes no box

    table = markdown_table({"v2": with_head, "v1": without}).splitlines()
    row = next(line for line in table if "| mask AP |" in line)
    assert row == f"| det-test | mask AP | {with_head[MASK_AP]:.3f} | - |"
    assert "| zeroshot-novel | AP | not measured | not measured |" in table


def test_split_without_masks_leaves_the_row_unmeasured(det_test_only, tmp_path):
    root = tmp_path / "old"
    (root / "det-test").mkdir(parents=True)
    data = json.loads((det_test_only / "det-test" / "annotations.json").read_text())
    for annotation in data["annotations"]:
        annotation.pop("segmentation", None)
    (root / "det-test" / "annotations.json").write_text(json.dumps(data))
    (root / "det-test" / "images").symlink_to(det_test_only / "det-test" / "images")
    numbers = evaluate_model(save_masked_glip(tmp_path / "m.safetensors", input_sizes=(64, 96)), root,
                             progress=False)
    assert MASK_AP not in numbers and "det-test" in numbers
    assert "| det-test | mask AP | not measured |" in markdown_table({"v2": numbers})
