"""The trainer on glip-tiny and 64x64 synthetic shapes: resume after SIGKILL, non-finite loss,
freezing, gradient accumulation, metrics and the exported model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from synthetic_shapes import tiny_config
from glip.checkpoint import load_glip
from glip.training import checkpointing
from glip.training.train_cli import main as train_main
from glip.training.train_config import ModelSection, TrainConfig
from glip.training.starting_model import build_model
from glip.training.trainer import NonFiniteLossError, Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_sigkill_then_resume_equals_an_uninterrupted_run(shapes_64, tmp_path) -> None:
    steps = 6
    # Dropout stays on and images are flipped at random: the RNG states and data position must be restored.
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    config = tiny_config(shapes_64, killed_dir, train={"max_steps": steps})
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "glip.training.train_cli", str(config_path)]
    process = subprocess.Popen(command, env=_subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while checkpointing.latest_checkpoint(killed_dir / "checkpoints") is None:
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    killed_at = [step for step, _ in checkpointing.list_checkpoints(killed_dir / "checkpoints")]
    assert killed_at and max(killed_at) < steps and not (killed_dir / "model.safetensors").exists()

    resumed = subprocess.run(command + ["--resume"], env=_subprocess_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "trained model:" in resumed.stdout

    Trainer(TrainConfig.from_dict(tiny_config(shapes_64, straight_dir, train={"max_steps": steps}))).fit()
    final = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(killed_dir / "checkpoints"))
    reference = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(straight_dir / "checkpoints"))
    assert final["step"] == reference["step"] == steps
    torch.testing.assert_close(final["model"], reference["model"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(final["ema"]["weights"], reference["ema"]["weights"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(final["optimizer"]["state"], reference["optimizer"]["state"], rtol=1e-5, atol=1e-6)
    # The exported model holds the EMA weights; the metric log tells one history, one row per step.
    exported = load_glip(killed_dir / "model.safetensors").state_dict()
    torch.testing.assert_close(exported, final["ema"]["weights"])
    rows = [json.loads(line) for line in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, steps + 1))


def test_non_finite_loss_stops_with_the_last_good_state(shapes_64, tmp_path) -> None:
    config = TrainConfig.from_dict(tiny_config(shapes_64, tmp_path / "run", train={"max_steps": 5},
                                               output={"checkpoint_every": 100}))
    trainer = Trainer(config)
    compute, calls = trainer.loss_fn, []

    def poisoned(output, targets, mask):
        terms = compute(output, targets, mask)
        calls.append(1)
        if len(calls) == 3:
            terms["box"] = terms["box"] * float("nan")
        return terms

    trainer.loss_fn = poisoned
    with pytest.raises(NonFiniteLossError) as raised:
        trainer.fit()
    message = str(raised.value)
    assert "step 3" in message and "annotations.json#" in message and "step_00000002.pt" in message
    saved = checkpointing.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [step for step, _ in saved] == [2]
    state = checkpointing.load_checkpoint(saved[0][1])
    torch.testing.assert_close(state["model"], trainer.model.state_dict())
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["position"] == 4  # the bad batch is read again on resume


def test_freeze_accumulation_metrics_and_export(shapes_64, tmp_path) -> None:
    output = tmp_path / "run"
    config = TrainConfig.from_dict(tiny_config(
        shapes_64, output, train={"max_steps": 2, "batch_size": 1, "grad_accumulation": 2, "ema_decay": None,
                                  "freeze": ["backbone", "text_encoder"]}))
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    path = trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("backbone.", "text_encoder.")))
    assert not torch.equal(before["head.bias0"], after["head.bias0"])
    assert trainer.position == 4  # two steps of two micro-batches of one image
    torch.testing.assert_close(load_glip(path).state_dict(), after)
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert {"loss", "token", "box", "centerness", "lr", "language_lr", "grad_norm", "images_per_s"} <= set(rows[0])
    header = (output / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("step,epoch,loss,token,box,centerness")
    assert yaml.safe_load((output / "config.yaml").read_text())["train"]["freeze"] == ["backbone", "text_encoder"]
    # Frozen at their random initialisation, no source names them: the checkpoint stores them.
    state = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(output / "checkpoints"))
    assert state["frozen"] is None and set(state["model"]) == set(after)


def test_refuses_to_overwrite_a_run_without_resume(shapes_64, tmp_path) -> None:
    output = tmp_path / "run"
    checkpointing.save_checkpoint(output / "checkpoints", 3, {"step": 3}, keep_last=1)
    trainer = Trainer(TrainConfig.from_dict(tiny_config(shapes_64, output)))
    with pytest.raises(FileExistsError, match="already holds training checkpoints.*--resume"):
        trainer.fit()


def test_bf16_autocast_on_the_cpu(tmp_path) -> None:
    from synthetic_shapes import make_shapes_dataset

    annotations = make_shapes_dataset(tmp_path / "data", num_images=2, size=160)
    config = TrainConfig.from_dict(tiny_config(annotations, tmp_path / "run", size=160,
                                               train={"max_steps": 1, "amp": "bf16"}))
    trainer = Trainer(config)
    assert trainer.amp_dtype == torch.bfloat16
    trainer.fit()
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert all(torch.isfinite(torch.tensor(row[k])) for k in ("token", "box", "centerness"))


def test_cli_errors_are_one_line(tmp_path, capsys) -> None:
    config_path = tmp_path / "run.yaml"
    config_path.write_text("train: {max_steps: 1}\n")
    assert train_main([str(config_path), "optim.lrr=1"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: unknown key 'optim.lrr'") and error.count("\n") == 1
    assert train_main([str(config_path)]) == 2
    assert "data.datasets is empty" in capsys.readouterr().err
    assert train_main([str(config_path), "train.device=tpu"]) == 2
    error = capsys.readouterr().err
    assert error == "error: train.device: unknown device 'tpu': use cpu, cuda, cuda:N or mps\n"


def test_cuda_asked_on_a_machine_without_it(tmp_path, capsys, monkeypatch) -> None:
    from synthetic_shapes import make_shapes_dataset

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config_path = tmp_path / "run.yaml"
    annotations = make_shapes_dataset(tmp_path / "data", num_images=2, size=64)
    config_path.write_text(yaml.safe_dump(tiny_config(annotations, tmp_path / "run")))
    assert train_main([str(config_path), "train.device=cuda"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: train.device: 'cuda' needs CUDA, but this machine has no usable CUDA device")
    assert error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_unreadable_image_is_skipped_or_named(tmp_path) -> None:
    from synthetic_shapes import make_shapes_dataset

    annotations = make_shapes_dataset(tmp_path / "data", num_images=3, size=64)
    broken = annotations.parent / "images" / "shape_002.png"
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated PNG
    skip = tiny_config(annotations, tmp_path / "skip", train={"max_steps": 3, "batch_size": 1})  # reads all 3
    Trainer(TrainConfig.from_dict(skip)).fit()
    assert (tmp_path / "skip" / "model.safetensors").is_file()
    strict = tiny_config(annotations, tmp_path / "raise", train={"max_steps": 3, "batch_size": 1})
    strict["data"]["datasets"][0]["on_error"] = "raise"
    with pytest.raises(ValueError, match="shape_002.png"):
        Trainer(TrainConfig.from_dict(strict)).fit()


def test_init_from_a_related_architecture_copies_the_shared_tensors(tmp_path: Path) -> None:
    from glip.checkpoint import save_glip
    from glip.config import get_config
    from glip.modeling import GLIP

    torch.manual_seed(3)
    fused = GLIP(get_config("glip-tiny"))
    path = save_glip(fused, tmp_path / "fused.safetensors")
    start = build_model(ModelSection(config="glip-tiny-nofusion", init_from=str(path)))
    twin = start.model
    assert twin.config.name == "glip-tiny-nofusion"
    source = fused.state_dict()
    for key, value in twin.state_dict().items():
        assert torch.equal(value, source[key]), key
    assert start.sourced == {name for name, _ in twin.named_parameters()}
    assert start.sources == f"model.init_from={path}"


def _start_weights(path: Path, seed: int = 5) -> str:
    """A glip-tiny model file to start from (a source the config names)."""
    from glip.checkpoint import save_glip
    from glip.config import get_config
    from glip.modeling import GLIP

    torch.manual_seed(seed)
    return str(save_glip(GLIP(get_config("glip-tiny")), path))


def _frozen_start_config(shapes_64: Path, output: Path, weights: str) -> TrainConfig:
    return TrainConfig.from_dict(tiny_config(
        shapes_64, output, model={"weights": weights},
        train={"max_steps": 4, "freeze": ["backbone", "text_encoder"]}))


def test_frozen_parameters_of_the_weights_file_are_left_out_and_resume_is_bit_identical(shapes_64, tmp_path) -> None:
    weights = _start_weights(tmp_path / "start.safetensors")
    straight = Trainer(_frozen_start_config(shapes_64, tmp_path / "straight", weights))
    straight.fit()
    frozen = {name for name, p in straight.model.named_parameters() if not p.requires_grad}
    first, last = [path for _, path in checkpointing.list_checkpoints(tmp_path / "straight" / "checkpoints")]
    state = checkpointing.load_checkpoint(first)
    assert state["version"] == 2 and set(state["frozen"]["names"]) == frozen
    assert state["frozen"]["sources"] == f"model.weights={weights}"
    assert not frozen & set(state["model"]) and not frozen & set(state["ema"]["weights"])
    assert set(state["model"]) | frozen == set(straight.model.state_dict())

    # A run killed after step 2: only the first checkpoint is left; resuming rebuilds the frozen part.
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    (tmp_path / "resumed" / "checkpoints" / first.name).write_bytes(first.read_bytes())
    resumed = Trainer(_frozen_start_config(shapes_64, tmp_path / "resumed", weights))
    resumed.fit(resume=True)
    final = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(tmp_path / "resumed" / "checkpoints"))
    reference = checkpointing.load_checkpoint(last)
    for part in ("model", "optimizer", "ema"):
        expected = reference[part]["state"] if part == "optimizer" else reference[part]
        got = final[part]["state"] if part == "optimizer" else final[part]
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert final["frozen"] == reference["frozen"]
    exported = load_glip(tmp_path / "resumed" / "model.safetensors").state_dict()
    torch.testing.assert_close(exported, straight.ema.module.state_dict(), rtol=0, atol=0)


def test_resume_refuses_frozen_weights_that_changed(shapes_64, tmp_path) -> None:
    weights = _start_weights(tmp_path / "start.safetensors")
    config = _frozen_start_config(shapes_64, tmp_path / "run", weights)
    config.train.max_steps = 2
    Trainer(config).fit()
    _start_weights(tmp_path / "start.safetensors", seed=6)  # the file the config names is replaced
    config.train.max_steps = 4
    with pytest.raises(checkpointing.FrozenWeightsMismatch) as raised:
        Trainer(config).fit(resume=True)
    message = str(raised.value)
    assert "step_00000002.pt does not store its" in message and f"model.weights={weights}" in message
    assert "\n" not in message


def test_a_model_passed_in_is_stored_whole(shapes_64, tmp_path) -> None:
    """The trainer cannot build a model it was given again: its frozen parameters stay in the checkpoint."""
    from glip.config import get_config
    from glip.modeling import GLIP

    torch.manual_seed(7)
    model = GLIP(get_config("glip-tiny"))
    model.backbone.requires_grad_(False)
    config = TrainConfig.from_dict(tiny_config(shapes_64, tmp_path / "run", train={"max_steps": 1, "ema_decay": None}))
    trainer = Trainer(config, model=model)
    trainer.fit()
    state = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert state["frozen"] is None and set(state["model"]) == set(trainer.model.state_dict())
