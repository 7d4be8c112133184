"""glip.distributed: one device rule, the single-process context, and torchrun with two CPU
processes (gloo) giving what one process gives, for training and for evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from glip.distributed import DistributedContext, init_distributed, resolve_device
from support import save_small_glip

REPO_ROOT = Path(__file__).resolve().parents[1]
# Deterministic forward passes: no dropout anywhere (each process would draw its own masks).
NO_DROPOUT = {"text": {"dropout": 0.0}, "head": {"fusion_dropout": 0.0, "fusion_drop_path": 0.0}}


@pytest.fixture()
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture()
def four_gpus(monkeypatch):
    """A machine with four CUDA devices, as far as resolve_device can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


# ---------------------------------------------------------------------------------- devices
def test_default_is_cuda_when_available_else_cpu(no_cuda) -> None:
    assert resolve_device(None) == torch.device("cpu")


def test_default_on_a_cuda_machine_is_an_indexed_cuda_device(four_gpus, monkeypatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device(None) == torch.device("cuda", 0)


@pytest.mark.parametrize("device", ["cpu", " CPU ", torch.device("cpu")])
def test_cpu_forms(device) -> None:
    assert resolve_device(device) == torch.device("cpu")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_is_one_clear_line(no_cuda, device) -> None:
    with pytest.raises(ValueError) as raised:
        resolve_device(device)
    message = str(raised.value)
    assert "no usable CUDA device" in message and "use cpu" in message and "\n" not in message


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", "", "meta", torch.device("meta")])
def test_unknown_devices_name_the_accepted_forms(device) -> None:
    with pytest.raises(ValueError, match=r"unknown device .*: use cpu, cuda, cuda:N or mps$"):
        resolve_device(device)


def test_mps_without_mps(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no usable MPS device: use cpu"):
        resolve_device("mps")


def test_local_rank_picks_the_gpu_of_a_bare_cuda(four_gpus, monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("cuda") == torch.device("cuda", 2)
    assert resolve_device(None) == torch.device("cuda", 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # an explicit index is kept
    with pytest.raises(ValueError, match=r"cuda:7 does not exist: this machine has 4 CUDA device\(s\)"):
        resolve_device("cuda:7")


# ---------------------------------------------------------------------------------- one process
def test_one_process_context_is_the_identity(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    assert (context.rank, context.world_size, context.device, context.is_main) == (0, 1, torch.device("cpu"), True)
    assert not context.is_distributed and not context.owns_group
    assert context.shard(3) == [0, 1, 2]
    assert context.all_gather({"a": 1}) == [{"a": 1}]
    assert context.any(True) and not context.any(False)
    assert context.mean({"loss": 2.0}) == {"loss": 2.0}
    model = torch.nn.Linear(2, 2)
    assert context.wrap(model) is model
    context.barrier()
    context.close()
    assert not torch.distributed.is_initialized()


def test_shards_deal_batches_round_robin() -> None:
    shards = [DistributedContext(rank=r, world_size=3).shard(8) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5]]


# ---------------------------------------------------------------------------------- training
def test_two_training_processes_match_one_process_with_the_same_global_batch(tmp_path) -> None:
    from training.synthetic_shapes import make_shapes_dataset, tiny_config

    from glip.training import checkpointing
    from glip.training.train_config import TrainConfig
    from glip.training.trainer import Trainer

    shapes = make_shapes_dataset(tmp_path / "shapes", num_images=8, size=64, seed=0)
    steps = 3
    common = {"model": {"overrides": NO_DROPOUT}, "output": {"checkpoint_every": steps}}
    distributed = tiny_config(shapes, tmp_path / "ddp", train={"max_steps": steps, "batch_size": 1}, **common)
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(distributed))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "glip.training.train_cli", str(config_path)]
    result = subprocess.run(command, env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    single = tiny_config(shapes, tmp_path / "single", train={"max_steps": steps, "batch_size": 2}, **common)
    trainer = Trainer(TrainConfig.from_dict(single))
    trainer.fit()

    ddp_state = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(tmp_path / "ddp" / "checkpoints"))
    assert ddp_state["step"] == steps and ddp_state["world_size"] == 2 and len(ddp_state["rng"]) == 2
    assert ddp_state["position"] == trainer.position == 2 * steps
    torch.testing.assert_close(ddp_state["model"], trainer.model.state_dict(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ddp_state["ema"]["weights"], trainer.ema.module.state_dict(), rtol=1e-4, atol=1e-5)
    ddp_rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    single_rows = (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()
    assert len(ddp_rows) == len(single_rows) == steps
    for ddp_row, single_row in zip(map(json.loads, ddp_rows), map(json.loads, single_rows)):
        # The logged loss is the global-batch loss, and the gradient has the same scale (Adam and
        # clipping would hide a wrong scale in the weights).
        for key in ("token", "box", "centerness", "grad_norm"):
            assert abs(ddp_row[key] - single_row[key]) < 1e-4 * max(1.0, abs(single_row[key]))


# ---------------------------------------------------------------------------------- evaluation
@pytest.fixture()
def evaluation_files(tmp_path):
    """A small model and five noise images whose ground truth is made from the model's own best
    boxes (moved a little), so AP is neither 0 nor 1 and depends on every detection."""
    from glip.evaluation import evaluate
    from glip.predictor import GLIPPredictor

    weights = save_small_glip(tmp_path / "small.safetensors")
    rng = np.random.default_rng(3)
    images = []
    for index in range(1, 6):
        Image.fromarray(rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8)).save(tmp_path / f"{index}.png")
        images.append({"id": index, "file_name": f"{index}.png", "width": 80, "height": 60})
    categories = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
    first_box = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}
    gt = {"images": images, "annotations": [first_box], "categories": categories}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    first = evaluate(tmp_path / "gt.json", GLIPPredictor.from_pretrained(weights, device="cpu"))
    annotations = []
    for image in range(1, 6):
        best = sorted((p for p in first.predictions if p["image_id"] == image), key=lambda p: -p["score"])[:3]
        for shift, p in enumerate(best):
            x, y, w, h = p["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": image, "category_id": p["category_id"],
                                "bbox": [x + shift, y, w, h], "area": w * h, "iscrowd": 0})
    gt["annotations"] = annotations
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    return weights, tmp_path / "gt.json"


def test_two_evaluation_processes_equal_one(evaluation_files, tmp_path) -> None:
    weights, dataset = evaluation_files
    arguments = ["-m", "glip.evaluation.cli", "--weights", str(weights), "--dataset", str(dataset),
                 "--device", "cpu", "--batch-size", "2", "--no-plots", "--no-progress"]
    for command, out in (([sys.executable, *arguments], "one"),
                         ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *arguments], "two")):
        completed = subprocess.run([*command, "--out", str(tmp_path / out)], cwd=tmp_path, env=_subprocess_env(),
                                   capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["timing"]["processes"] == 2 and one["timing"]["processes"] == 1
    assert 0.0 < one["metrics"]["AP"] < 1.0
    assert two["metrics"] == one["metrics"] and two["per_category"] == one["per_category"]
    assert two["precision_recall"] == one["precision_recall"]
    predictions_one = json.loads((tmp_path / "one" / "predictions.json").read_text())
    predictions_two = json.loads((tmp_path / "two" / "predictions.json").read_text())
    assert predictions_two == predictions_one
    assert {p["image_id"] for p in predictions_two} == {1, 2, 3, 4, 5}
