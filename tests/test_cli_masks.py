"""``glip detect --masks``: each detection's RLE in the JSON, translucent fills in the picture, a
one-line error for a model without a mask head, and no change without the option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from glip.cli import main
from glip.data.masks import rle_to_mask
from masked_model import save_masked_glip


@pytest.fixture(scope="module")
def masked_checkpoint(tmp_path_factory):
    return save_masked_glip(tmp_path_factory.mktemp("masked") / "glip-tiny-masks.safetensors")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "shapes.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 130, 3), dtype=np.uint8)).save(path)
    return path


def _run(checkpoint, image, out, *extra) -> int:
    return main(["detect", str(image), "--classes", "circle", "square", "--weights", str(checkpoint),
                 "--threshold", "0.3", "--max-detections", "6", "--out", str(out), "--device", "cpu", *extra])


def test_masks_are_written_and_drawn(masked_checkpoint, image, tmp_path):
    assert _run(masked_checkpoint, image, tmp_path / "plain") == 0
    assert _run(masked_checkpoint, image, tmp_path / "masks", "--masks") == 0
    plain = json.loads((tmp_path / "plain" / "shapes.json").read_text())
    masked = json.loads((tmp_path / "masks" / "shapes.json").read_text())
    assert all(set(d) == {"bbox_xyxy", "score", "phrase", "phrase_index"} for d in plain["detections"])
    assert len(masked["detections"]) == len(plain["detections"]) == 6
    union = np.zeros((90, 130), dtype=bool)
    for with_mask, without in zip(masked["detections"], plain["detections"]):
        assert {k: v for k, v in with_mask.items() if k not in ("segmentation", "mask_area")} == without
        mask = rle_to_mask(with_mask["segmentation"])
        assert mask.shape == (90, 130) and with_mask["mask_area"] == int(mask.sum())
        union |= mask
    with Image.open(tmp_path / "plain" / "shapes.png") as a, Image.open(tmp_path / "masks" / "shapes.png") as b:
        changed = (np.asarray(a.convert("RGB")) != np.asarray(b.convert("RGB"))).any(axis=2)
    assert union.any() and changed.any()
    assert not (changed & ~union).any(), "the fills stay inside the masks; boxes and labels are unchanged"


def test_masks_without_a_mask_head_is_one_line(tiny_checkpoint, image, tmp_path, capsys):
    code = _run(tiny_checkpoint, image, tmp_path / "out", "--masks")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "no mask head" in err and "--masks" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
