"""``glip vqa-train`` on a tiny config: 2 steps, the model and its head exported and loaded by the
predictor, an exact resume, and clear errors for bad configs and a changed answer vocabulary."""

from __future__ import annotations

import pytest
import torch

from glip.data.vqa import read_vqa
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


def test_bad_configs_are_one_line_errors(tmp_path, data):
    with pytest.raises(TrainConfigError, match="unknown key 'head.width'"):
        _config(tmp_path, data, "bad", "head.width=3")
    with pytest.raises(TrainConfigError, match="data.train needs at least one VQA source"):
        _config(tmp_path, data, "bad", "data.train=[]")
    with pytest.raises(ValueError, match="fewer than one batch"):
        VqaTrainer(_config(tmp_path, data, "bad", "train.batch_size=64"))


def test_the_shapes_config_reads():
    from pathlib import Path

    config = load_vqa_train_config(Path(__file__).resolve().parents[2] / "configs" / "vqa-shapes.yaml")
    assert config.train.freeze == ["backbone", "text_encoder"] and config.data.min_answer_count == 9
    assert config.data.train[0].questions.endswith("vqa/questions.json") and config.data.val
