"""The mask term of the language-aware mask head: RoIs and targets, the empty case, training on
shapes with instance masks, weight 0 unchanged, model files with and without the head, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from synthetic_shapes import assert_grounding_terms_unchanged, tiny_config
from glip.checkpoint import load_glip, save_glip
from glip.config import MaskHeadConfig, glip_tiny
from glip.modeling.glip import GLIP
from glip.shapes.generate import generate_split
from glip.training.mask_loss import MaskLoss, collect_mask_rois, jitter_boxes, mask_targets
from glip.training.train_config import TrainConfig, TrainConfigError
from glip.training.trainer import Trainer

NO_DROPOUT = {"text": {"dropout": 0.0}, "head": {"fusion_dropout": 0.0, "fusion_drop_path": 0.0}}
HEAD = {"mask_head": {"enabled": True, "channels": 16, "num_convs": 2}}


@pytest.fixture(scope="module")
def shapes_with_masks(tmp_path_factory) -> Path:
    """Four 64x64 images of the shapes world (every object has an instance mask); the COCO JSON."""
    split = generate_split(tmp_path_factory.mktemp("mask_shapes"), "det-train", 4, seed=0, image_size=64)
    return split / "annotations.json"


def _config(annotations: Path, directory: Path, loss: dict | None = None, **sections) -> TrainConfig:
    config = tiny_config(annotations, directory, **sections)
    config["data"]["datasets"][0]["images"] = str(annotations.parent)  # file names start with images/
    config["loss"] = dict(loss or {})
    return TrainConfig.from_dict(config)


def _batch(trainer: Trainer, count: int = 2):
    return trainer.collator([trainer.dataset[i] for i in range(count)])


def test_targets_are_the_mask_inside_each_box() -> None:
    masks = torch.zeros(2, 40, 50, dtype=torch.uint8)
    masks[0, 10:30, 10:20] = 1  # fills box 0 entirely
    masks[1, 0:20, 20:30] = 1  # the left half of box 1
    boxes = torch.tensor([[10.0, 10.0, 20.0, 30.0], [20.0, 0.0, 40.0, 20.0]])
    targets = mask_targets(masks, boxes, resolution=8)
    assert targets.shape == (2, 8, 8) and targets.dtype == torch.bool
    assert targets[0].all()
    assert targets[1, :, :4].all() and not targets[1, :, 4:].any()
    torch.testing.assert_close(mask_targets(masks, boxes, resolution=8, chunk=1), targets)
    assert mask_targets(masks[:0], boxes[:0], resolution=8).shape == (0, 8, 8)


def test_rois_come_from_images_with_masks_and_boxes_with_tokens() -> None:
    positive = torch.zeros(3, 6)
    positive[0, 1:3] = 1
    positive[2, 4] = 1  # box 1 has no token: skipped
    with_masks = {"boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 2.0, 6.0, 6.0], [1.0, 1.0, 9.0, 5.0]]),
                  "positive_map": positive, "masks": torch.ones(3, 10, 12, dtype=torch.uint8)}
    without = {"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "positive_map": positive[:1]}
    rois = collect_mask_rois([with_masks, without], resolution=4)
    assert [b.shape[0] for b in rois.boxes] == [2, 0]
    assert rois.token_sets == [[[1, 2], [4]], []]
    assert [t.shape for t in rois.targets] == [(2, 4, 4), (0, 4, 4)]
    assert rois.targets[0].all()
    with pytest.raises(ValueError, match="2 masks for 3 boxes"):
        collect_mask_rois([{**with_masks, "masks": with_masks["masks"][:2]}], resolution=4)


def test_jitter_moves_boxes_within_the_image() -> None:
    boxes = torch.tensor([[0.0, 0.0, 20.0, 10.0], [30.0, 30.0, 40.0, 40.0]])
    assert torch.equal(jitter_boxes(boxes, 0.0, 40, 40), boxes)
    moved = jitter_boxes(boxes, 0.2, 40, 40, torch.Generator().manual_seed(0))
    assert not torch.equal(moved, boxes)
    assert (moved[:, :2] >= 0).all() and (moved[:, 2] <= 40).all() and (moved[:, 3] <= 40).all()
    assert ((moved[:, 2:] - moved[:, :2]) >= 1).all()
    assert ((moved - boxes).abs() <= 0.2 * 20 + 1e-5).all()


def test_a_batch_without_masks_gives_zero_with_the_graph(shapes_with_masks, tmp_path) -> None:
    config = _config(shapes_with_masks, tmp_path / "run", {"mask": 1.0}, model={"overrides": HEAD})
    trainer = Trainer(config)
    batch = _batch(trainer)
    for target in batch.targets:
        del target["masks"]
    terms = trainer.loss_terms(batch)
    assert terms["mask"].item() == 0.0 and terms["mask"].requires_grad
    terms["mask"].backward()
    assert trainer.model.mask_head.log_scale.grad is not None


def test_the_mask_term_trains_and_is_logged(shapes_with_masks, tmp_path) -> None:
    config = _config(shapes_with_masks, tmp_path / "run", {"mask": 1.0},
                     model={"overrides": {**HEAD, **NO_DROPOUT}},
                     optim={"lr": 2e-3, "language_lr": 2e-3, "warmup_steps": 0},
                     train={"max_steps": 2, "ema_decay": None})
    trainer = Trainer(config)
    assert trainer.terms == ("token", "box", "centerness", "mask")
    batch = _batch(trainer)
    assert all("masks" in target and target["masks"].shape[0] > 0 for target in batch.targets)
    history = [trainer.train_step([batch])[0]["mask"] for _ in range(10)]
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.9 * history[0], str([round(v, 4) for v in history])

    fresh = Trainer(_config(shapes_with_masks, tmp_path / "logged", {"mask": 1.0}, model={"overrides": HEAD},
                            train={"max_steps": 2, "ema_decay": None}))
    fresh.fit()
    rows = [json.loads(line) for line in (tmp_path / "logged" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(math.isfinite(row["mask"]) and row["mask"] > 0 for row in rows)
    for row in rows:
        assert abs(row["loss"] - sum(w * row[k] for k, w in fresh.loss_weights.items())) < 1e-6
    assert "mask" in (tmp_path / "logged" / "metrics.csv").read_text().splitlines()[0].split(",")
    # The exported model keeps its mask head.
    exported = load_glip(tmp_path / "logged" / "model.safetensors")
    assert exported.mask_head is not None


def test_weight_zero_leaves_the_loss_as_before(shapes_with_masks, tmp_path) -> None:
    # Even with the head in the model: no term, the same values.
    config = _config(shapes_with_masks, tmp_path / "run", model={"overrides": {**HEAD, **NO_DROPOUT}})
    assert config.loss.mask == 0.0 and "mask" not in config.loss_weights()
    trainer = Trainer(config)
    assert trainer.terms == ("token", "box", "centerness") and trainer.mask_loss is None
    batch = _batch(trainer)
    assert_grounding_terms_unchanged(trainer, batch)


def test_model_files_with_and_without_the_head(tmp_path) -> None:
    config = glip_tiny()
    config.mask_head = MaskHeadConfig(enabled=True, channels=8, num_convs=1)
    with_head = GLIP(config)
    save_glip(with_head, tmp_path / "with.safetensors")
    loaded = load_glip(tmp_path / "with.safetensors")
    assert loaded.config.mask_head == config.mask_head
    torch.testing.assert_close(loaded.mask_head.state_dict(), with_head.mask_head.state_dict())
    without = GLIP(glip_tiny())
    save_glip(without, tmp_path / "without.safetensors")
    assert "mask_head" not in json.loads((tmp_path / "without.json").read_text())
    plain = load_glip(tmp_path / "without.safetensors")
    assert plain.mask_head is None and not any(k.startswith("mask_head.") for k in plain.state_dict())


def test_a_weight_without_the_head_is_a_one_line_error(shapes_with_masks, tmp_path) -> None:
    config = _config(shapes_with_masks, tmp_path / "run", {"mask": 0.5})
    with pytest.raises(ValueError) as raised:
        Trainer(config)
    message = str(raised.value)
    assert "loss.mask = 0.5" in message and "mask_head: {enabled: true}" in message and "\n" not in message


@pytest.mark.parametrize("override, fragment", [
    ({"mask": -1.0}, "loss.mask is a weight"),
    ({"mask_box_jitter": 0.5}, r"loss.mask_box_jitter must be in \[0, 0.5\)"),
])
def test_bad_settings_are_named(override, fragment) -> None:
    with pytest.raises(TrainConfigError, match=fragment):
        TrainConfig.from_dict({"loss": override})


def test_mask_loss_rejects_a_bad_jitter() -> None:
    with pytest.raises(ValueError, match="jitter must be in"):
        MaskLoss(box_jitter=0.7)
