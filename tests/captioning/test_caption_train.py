"""glip caption-train on a tiny config: two steps, the caption term logged, the exported model
captions through the predictor, an exact resume; bad configs and missing images are one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from caption_model import write_caption_data


def _config(data, out, steps=2, **extra):
    from glip.captioning.train_config import CaptionTrainConfig

    return CaptionTrainConfig.from_dict({
        "model": {"config": "glip-tiny", "overrides": {"caption": {"enabled": True, "max_tokens": 6},
                                                         "input": {"min_size": 64, "max_size": 64}}},
        "data": {"train": [{"annotations": str(data)}]},
        "input": {"min_sizes": [64], "max_size": 64},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "train": {"max_steps": steps, "batch_size": 2, "ema_decay": 0.9, "num_workers": 0, "device": "cpu",
                  "amp": "off", **extra},
        "output": {"dir": str(out), "checkpoint_every": 1, "log_every": 1, "tensorboard": False, "progress": False},
    })


def test_two_steps_train_export_and_resume_exactly(tmp_path):
    from glip.captioning.trainer import CaptionTrainer
    from glip.checkpoint import load_glip
    from glip.predictor import GLIPPredictor

    data = write_caption_data(tmp_path / "data")
    path = CaptionTrainer(_config(data, tmp_path / "run")).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2] and all(row["caption"] > 0 for row in rows)
    assert "caption:" in (tmp_path / "run" / "config.yaml").read_text()  # the caption config, not GLIP's
    model = load_glip(path)
    assert model.caption_head is not None
    result = GLIPPredictor(model, device="cpu").caption(str(data.parent / "img0.png"), max_tokens=3)[0]
    assert isinstance(result.caption, str) and (result.width, result.height) == (48, 48)

    # one step, then a resumed second step: the same weights as two steps at once
    CaptionTrainer(_config(data, tmp_path / "split", steps=1)).fit()
    resumed = CaptionTrainer(_config(data, tmp_path / "split", steps=2)).fit(resume=True)
    whole, split = load_glip(path).state_dict(), load_glip(resumed).state_dict()
    assert all(torch.equal(whole[name], split[name]) for name in whole)


def test_a_model_without_caption_head_is_refused(tmp_path):
    from glip.captioning.train_config import CaptionTrainConfig
    from glip.captioning.trainer import CaptionTrainer

    data = write_caption_data(tmp_path / "data", count=2)
    config = _config(data, tmp_path / "run")
    config = CaptionTrainConfig.from_dict({**config.to_dict(), "model": {"config": "glip-tiny"}})
    with pytest.raises(ValueError, match=r"caption: \{enabled: true\}"):
        CaptionTrainer(config)


def test_missing_image_is_a_clear_error(tmp_path):
    from glip.captioning.trainer import CaptionTrainer
    from glip.data.validation import DataError

    data = write_caption_data(tmp_path / "data", count=3)
    (tmp_path / "data" / "img1.png").unlink()
    with pytest.raises(DataError, match=r"1 of 3 images are missing, e.g. .*img1.png"):
        CaptionTrainer(_config(data, tmp_path / "run"))


@pytest.mark.parametrize("change, message", [
    ({"input": {"flip_prob": 0.5}}, "flip_prob must be 0"),
    ({"data": {"train": []}}, "data.train is empty"),
    ({"loss": {"caption": 0.0}}, "must be positive"),
    ({"loss": {"token": 1.0}}, "unknown key token"),
])
def test_config_errors(change, message):
    from glip.captioning.train_config import CaptionTrainConfig
    from glip.training.train_config import TrainConfigError

    base = {"data": {"train": [{"annotations": "captions.jsonl"}]}}
    with pytest.raises(TrainConfigError, match=message):
        CaptionTrainConfig.from_dict({**base, **change})


def test_shipped_config_reads():
    from pathlib import Path

    from glip.captioning.train_config import load_caption_train_config

    config = load_caption_train_config(Path(__file__).resolve().parents[2] / "configs" / "caption-shapes.yaml",
                                       ["train.max_steps=2"])
    assert config.model.overrides["caption"]["enabled"] and config.train.max_steps == 2
