"""``glip vqa-train`` on a tiny config: 2 steps, the model and its head exported and loaded by the
predictor, an exact resume (frozen GLIP weights left out of the checkpoints included), the command
through the one `train` entry, and clear errors for bad configs, a changed answer vocabulary and a
checkpoint of another trainer."""

from __future__ import annotations

import pytest
import torch

from glip.data.vqa import read_vqa
from glip.training import checkpointing
from glip.training.train_config import TrainConfigError
from glip.training.vqa_config import load_vqa_train_config
from glip.training.vqa_trainer import VqaTrainer
from vqa_data import write_vqa_data


def _config(tmp_path, root, name: str, *overrides: str):
    text = f"""
model: {{config: glip-tiny, overrides: {{input: {{min_size: 64, max_size: 64}}}}}}
data:
  train: [{{questions: {root}/questions.json, annotations: {root}/annotations.json}}]
  min_answer_count: 1
head: {{hidden_dim: 8}}
optim: {{warmup_steps: 0, lr: 1.0e-3}}
train: {{max_steps: 2, batch_size: 2, num_workers: 0, device: cpu, ema_decay: 0.9}}
output: {{dir: {tmp_path / name}, tensorboard: false, progress: false, checkpoint_every: 1}}
"""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_vqa_train_config(path, list(overrides))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_vqa_data(tmp_path_factory.mktemp("vqa-data"), images=2)


def test_two_steps_export_a_model_the_predictor_answers_with(tmp_path, data):
    from glip.predictor import GLIPPredictor

    path = VqaTrainer(_config(tmp_path, data, "run")).fit()
    assert path.name == "model.safetensors" and (path.parent / "model.vqa.safetensors").is_file()
    assert (path.parent / "model.vqa.json").is_file() and (path.parent / "metrics.jsonl").is_file()
    predictor = GLIPPredictor.from_pretrained(path, device="cpu")
    assert predictor.answerer is not None
    assert set(predictor.answerer.vocabulary.answers) == {"2", "yes", "red", "no"}
    result = predictor.answer(data / "images/001.png", ["is there a red square?"], top_k=4)[0]
    assert sorted(a.answer for a in result.qa[0].answers) == ["2", "no", "red", "yes"]


def test_resume_continues_exactly(tmp_path, data):
    straight = VqaTrainer(_config(tmp_path, data, "straight"))
    straight.fit()
    VqaTrainer(_config(tmp_path, data, "resumed", "train.max_steps=1")).fit()
    resumed = VqaTrainer(_config(tmp_path, data, "resumed"))
    resumed.fit(resume=True)
    assert resumed.step == 2
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    questions = [q for q in read_vqa(data / "vqa.jsonl") if q.question_type != "color"]  # no "red"
    fewer = VqaTrainer(_config(tmp_path, data, "resumed", "train.max_steps=3"), questions=questions)
    with pytest.raises(ValueError, match="answer vocabulary mismatch"):
        fewer.fit(resume=True)


def test_frozen_glip_weights_are_left_out_and_resume_is_bit_identical(tmp_path, data):
    from glip.checkpoint import save_glip
    from glip.config import get_config
    from glip.modeling.glip import GLIP

    torch.manual_seed(5)
    weights = tmp_path / "start.safetensors"
    save_glip(GLIP(get_config("glip-tiny")), weights)
    start = (f"model.weights={weights}", "train.freeze=[backbone]")
    straight = VqaTrainer(_config(tmp_path, data, "straight", *start))
    straight.fit()
    first, last = [path for _, path in checkpointing.list_checkpoints(tmp_path / "straight" / "checkpoints")]
    state = checkpointing.load_checkpoint(first)
    frozen = {name for name, p in straight.model.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith("glip.backbone.") for name in frozen)
    assert set(state["frozen"]["names"]) == frozen and not frozen & set(state["model"])
    assert state["format"] == "glip-vqa-train" and set(state["answers"]) == {"2", "yes", "red", "no"}

    # A run stopped after step 1: resuming rebuilds the frozen part and ends where the straight run did.
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    (tmp_path / "resumed" / "checkpoints" / first.name).write_bytes(first.read_bytes())
    VqaTrainer(_config(tmp_path, data, "resumed", *start)).fit(resume=True)
    final = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(tmp_path / "resumed" / "checkpoints"))
    reference = checkpointing.load_checkpoint(last)
    for part in ("model", "ema"):
        torch.testing.assert_close(final[part], reference[part], rtol=0, atol=0)
    assert torch.equal(final["rng"][0]["torch"], reference["rng"][0]["torch"])  # the head's dropout drew alike
    torch.testing.assert_close(final["optimizer"]["state"], reference["optimizer"]["state"], rtol=0, atol=0)


def test_the_command_trains_through_the_one_entry_and_scores_the_validation_questions(tmp_path, data, capsys):
    import json

    import yaml

    from glip.cli import main

    _config(tmp_path, data, "cli")  # writes cli.yaml
    validation = f"data.val=[{{questions: {data}/vqa.jsonl}}]"
    assert main(["vqa-train", str(tmp_path / "cli.yaml"), validation, "train.max_steps=1"]) == 0
    printed = capsys.readouterr().out
    assert "trained model:" in printed and "VQA accuracy" in printed
    run = tmp_path / "cli"
    assert json.loads((run / "vqa_metrics.json").read_text())["overall"] >= 0.0
    recorded = yaml.safe_load((run / "config.yaml").read_text())  # the VQA config, not the GLIP sections
    assert recorded["head"]["hidden_dim"] == 8 and recorded["data"]["val"][0]["questions"].endswith("vqa.jsonl")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1] and rows[0]["vqa"] > 0 and rows[0]["loss"] == rows[0]["vqa"]
    # Resuming the finished run with another max_steps continues it; a fresh run there is refused.
    assert main(["vqa-train", str(tmp_path / "cli.yaml"), "train.max_steps=2", "--resume"]) == 0
    assert [s for s, _ in checkpointing.list_checkpoints(run / "checkpoints")][-1] == 2
    assert main(["vqa-train", str(tmp_path / "cli.yaml")]) == 2
    error = capsys.readouterr().err
    assert "already holds training checkpoints" in error and error.count("\n") == 1


def test_a_detection_checkpoint_is_not_resumed(tmp_path, data):
    checkpointing.save_checkpoint(tmp_path / "run" / "checkpoints", 1,
                                  {"format": checkpointing.TRAINING_FORMAT, "version": 2, "step": 1}, keep_last=1)
    with pytest.raises(ValueError, match="is not a VQA training checkpoint"):
        VqaTrainer(_config(tmp_path, data, "run")).fit(resume=True)


def test_bad_configs_are_one_line_errors(tmp_path, data):
    with pytest.raises(TrainConfigError, match="unknown key 'head.width'"):
        _config(tmp_path, data, "bad", "head.width=3")
    with pytest.raises(TrainConfigError, match="data.train needs at least one VQA source"):
        _config(tmp_path, data, "bad", "data.train=[]")
    with pytest.raises(ValueError, match="fewer than one global batch"):
        VqaTrainer(_config(tmp_path, data, "bad", "train.batch_size=64"))
    with pytest.raises(TrainConfigError, match="optim.betas needs two values"):  # the checks of glip train
        _config(tmp_path, data, "bad", "optim.betas=[0.9]")
    with pytest.raises(ValueError, match="one process"):
        from glip.distributed import DistributedContext

        VqaTrainer(_config(tmp_path, data, "bad"), DistributedContext(rank=0, world_size=2))


def test_a_head_trained_on_a_frozen_model_loads_beside_the_untouched_model_file(tmp_path, data):
    """What shipping a head beside the embedded model rests on: with every GLIP parameter frozen,
    the exported model is the starting file's, and the head passes the fingerprint check on it."""
    import shutil

    from glip.checkpoint import load_glip, save_glip
    from glip.config import get_config
    from glip.modeling.glip import GLIP
    from glip.predictor import GLIPPredictor

    torch.manual_seed(6)
    weights = tmp_path / "base" / "base.safetensors"
    weights.parent.mkdir()
    save_glip(GLIP(get_config("glip-tiny")), weights)
    path = VqaTrainer(_config(tmp_path, data, "head-only", f"model.weights={weights}",
                              "train.freeze=[backbone, fpn, text_encoder, head]")).fit()
    for (name, a), b in zip(load_glip(weights).state_dict().items(), load_glip(path).state_dict().values()):
        assert torch.equal(a, b), name
    for suffix in (".vqa.safetensors", ".vqa.json"):
        shutil.copy(path.parent / f"model{suffix}", weights.parent / f"base{suffix}")
    predictor = GLIPPredictor.from_pretrained(weights, device="cpu")
    assert predictor.answerer is not None
    assert predictor.answer(data / "images/001.png", ["is there a red square?"])[0].qa[0].answers


def test_the_shapes_configs_read():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "configs"
    config = load_vqa_train_config(configs / "vqa-shapes.yaml")
    assert config.train.freeze == ["backbone", "text_encoder"] and config.data.min_answer_count == 9
    assert config.data.train[0].questions.endswith("vqa/questions.json") and config.data.val
    head_only = load_vqa_train_config(configs / "vqa-nano-head.yaml")  # the head shipped beside glip-nano
    assert head_only.train.freeze == ["backbone", "fpn", "text_encoder", "head"]
    assert head_only.model.weights == "src/glip/weights/glip-nano.safetensors"
    scratch = load_vqa_train_config(configs / "vqa-shapes-scratch.yaml")  # the control of the pretrained run
    assert scratch.model.weights is None and scratch.model.init_from is None
    assert scratch.model.config == config.model.config and scratch.train.freeze == ["text_encoder"]
    for field in ("lr", "lr_multipliers", "warmup_steps", "schedule", "min_lr_factor"):
        assert getattr(scratch.optim, field) == getattr(config.optim, field), field
    assert (scratch.train.batch_size, scratch.data.train) == (config.train.batch_size, config.data.train)
