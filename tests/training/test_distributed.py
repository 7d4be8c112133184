"""Two processes under torchrun (gloo, CPU) take the same steps as one process with the same
global batch: DDP averages gradients and GLIPLoss averages its normalisers over processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from synthetic_shapes import tiny_config
from glip.training import checkpointing
from glip.training.train_config import TrainConfig
from glip.training.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]
# Deterministic forward passes: no dropout anywhere (each process would draw its own masks).
NO_DROPOUT = {"text": {"dropout": 0.0}, "head": {"fusion_dropout": 0.0, "fusion_drop_path": 0.0}}


def test_two_processes_match_one_process_with_the_same_global_batch(shapes_64, tmp_path) -> None:
    steps = 3
    common = {"model": {"overrides": NO_DROPOUT}, "output": {"checkpoint_every": steps}}
    distributed = tiny_config(shapes_64, tmp_path / "ddp", train={"max_steps": steps, "batch_size": 1}, **common)
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(distributed))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "glip.training.train_cli", str(config_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    single = tiny_config(shapes_64, tmp_path / "single", train={"max_steps": steps, "batch_size": 2}, **common)
    trainer = Trainer(TrainConfig.from_dict(single))
    trainer.fit()

    ddp_state = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(tmp_path / "ddp" / "checkpoints"))
    assert ddp_state["step"] == steps and ddp_state["world_size"] == 2 and len(ddp_state["rng"]) == 2
    assert ddp_state["position"] == trainer.position == 2 * steps
    torch.testing.assert_close(ddp_state["model"], trainer.model.state_dict(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ddp_state["ema"]["weights"], trainer.ema.module.state_dict(), rtol=1e-4, atol=1e-5)
    ddp_rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    single_rows = (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()
    for ddp_row, single_row in zip(map(yaml.safe_load, ddp_rows), map(yaml.safe_load, single_rows)):
        # The logged loss is the global-batch loss, and the gradient has the same scale (Adam and
        # clipping would hide a wrong scale in the weights).
        for key in ("token", "box", "centerness", "grad_norm"):
            assert abs(ddp_row[key] - single_row[key]) < 1e-4 * max(1.0, abs(single_row[key]))
