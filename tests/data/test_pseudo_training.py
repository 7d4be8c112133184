"""A glip-tiny run on gold grounding data mixed with packed pseudo-labelled shards resumes bit-identically."""

from __future__ import annotations

import json

import torch

from data_helpers import make_image, write_lines
from glip.training import checkpointing
from glip.training.train_config import TrainConfig
from glip.training.trainer import Trainer

COLOURS = ["red", "blue", "green", "yellow"]
SHAPES = ["ellipse", "star", "ring", "octagon"]


def _data(root):
    """Gold ODVG records and two pseudo-labelled shards (images beside them), all on 64x64 images."""
    make_image(root / "gold" / "g.png", 64, 64)
    gold = [{"filename": "g.png", "height": 64, "width": 64,
             "grounding": {"caption": f"a {colour} square", "regions": [
                 {"bbox": [4, 4, 30, 30], "tokens_positive": [[2, 2 + len(colour) + 7]]}]}}
            for colour in COLOURS]
    write_lines(root / "gold.jsonl", gold)
    for number in range(2):
        shard = root / "labels" / f"web-000{number}"
        records = []
        for index in range(6):
            colour, shape = COLOURS[index % 4], SHAPES[(index + number) % 4]
            caption = f"a {colour} {shape} left of a small {SHAPES[index % 4]}"
            image = f"images/{index}.png"
            make_image(shard / image, 64, 64, (30 * index, 80, 40 * number))
            regions = [{"bbox": [8, 10, 40, 44], "phrase": f"{colour} {shape}",
                        "tokens_positive": [[2, 3 + len(colour) + len(shape)]], "score": 0.8},
                       {"bbox": [30, 30, 60, 60], "phrase": "small", "tokens_positive": [[caption.index("small"),
                        caption.index("small") + 5]], "score": 0.3}]
            records.append({"filename": image, "height": 64, "width": 64, "key": str(index),
                            "shard": f"web-000{number}.tar", "grounding": {"caption": caption, "regions": regions}})
        write_lines(shard / f"web-000{number}.jsonl", records)
    return root / "gold.jsonl", root / "gold", f"{root}/labels/*/*.jsonl"


def _config(root, output) -> TrainConfig:
    gold, images, shards = _data(root)
    return TrainConfig.from_dict({
        "model": {"config": "glip-tiny", "overrides": {"input": {"min_size": 64, "max_size": 64}}},
        "data": {"datasets": [
            {"type": "odvg", "annotations": str(gold), "images": str(images), "weight": 1.0},
            {"type": "pseudo", "annotations": shards, "min_score": 0.5, "weight": 1.0},
        ]},
        "input": {"min_sizes": [64], "max_size": 64, "flip_prob": 0.5},
        "optim": {"lr": 1e-3, "language_lr": 1e-4, "warmup_steps": 2},
        "train": {"max_steps": 4, "batch_size": 2, "num_workers": 0, "device": "cpu", "ema_decay": 0.9, "seed": 3},
        "output": {"dir": str(output), "checkpoint_every": 2, "keep_last": 5, "log_every": 1, "progress": False,
                   "tensorboard": False},
    })


def test_mixed_pseudo_run_resumes_bit_identically(tmp_path) -> None:
    straight = Trainer(_config(tmp_path / "data", tmp_path / "straight"))
    straight.fit()
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(torch.isfinite(torch.tensor(row["token"])) for row in rows)
    first, last = [path for _, path in checkpointing.list_checkpoints(tmp_path / "straight" / "checkpoints")]

    # A run killed after step 2: resuming reads the same mixed, packed samples as the straight run.
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    (tmp_path / "resumed" / "checkpoints" / first.name).write_bytes(first.read_bytes())
    Trainer(_config(tmp_path / "data", tmp_path / "resumed")).fit(resume=True)
    final = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(tmp_path / "resumed" / "checkpoints"))
    reference = checkpointing.load_checkpoint(last)
    torch.testing.assert_close(final["model"], reference["model"], rtol=0, atol=0)
    torch.testing.assert_close(final["ema"], reference["ema"], rtol=0, atol=0)
