"""``glip finetune``: tune a base model to a detection task, then evaluate it.

Steps: read the task (categories, optional prompt overrides, one fixed prompt) from the training
file; draw a K-shot subset if asked; freeze what the mode does not train; train with the trainer
of `glip.training` on the fixed prompt; write the result; evaluate on the validation file.

Results in ``out/``:

- ``prompt`` and ``linear``: ``adapter.safetensors``, only the tuned tensors with the prompt, the
  categories and the base model's fingerprint (`glip.adapters`);
- ``full``: ``model.safetensors``, a whole model, plus ``task.json`` (prompt and categories);
- ``result.json``: mode, shots, seed, trainable parameters, file size, training time, metrics;
- ``train.json`` (the K-shot subset, when ``shots`` is set), ``checkpoints/`` (for ``--resume``),
  ``metrics.jsonl``.

Example:
    >>> result = finetune(FinetuneConfig(train="task/train.json", val="task/val.json", mode="prompt",
    ...                                  shots=5, out="runs/task-prompt-5shot"))  # doctest: +SKIP
    >>> result["metrics"]["AP"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from glip.data import CocoDetectionDataset
from glip.data.transforms import build_train_transforms
from glip.evaluation.prompt_overrides import load_prompt_overrides
from glip.evaluation.runner import evaluate_detection
from glip.modeling.glip import GLIP
from glip.predictor import GLIPPredictor
from glip.training.train_config import TrainConfig
from glip.data.training_set import SkipUnreadable
from glip.training.trainer import Trainer
from glip.adapters import Adapter, AdapterCategory, model_fingerprint, save_adapter
from glip.transfer.fewshot import sample_few_shot
from glip.transfer.finetune_config import DEFAULT_LR, FinetuneConfig
from glip.transfer.modes import MODES, trainable_names
from glip.transfer.task import Task, TaskError, check_same_categories, check_training_set, load_task

logger = logging.getLogger(__name__)

def load_base_model(weights: str | None) -> GLIP:
    """The base model in float32 on the CPU (None = the embedded default)."""
    return GLIPPredictor.from_pretrained(weights, device="cpu").model.float()


def _few_shot_file(config: FinetuneConfig, out: Path) -> str:
    """The training annotation file: the original, or its K-shot subset written to ``out``."""
    if config.shots is None:
        return config.train
    coco = json.loads(Path(config.train).read_text())
    subset = sample_few_shot(coco, config.shots, config.seed)
    path = out / "train.json"
    path.write_text(json.dumps(subset))
    logger.info("%d-shot subset (seed %d): %d of %d images -> %s", config.shots, config.seed,
                len(subset["images"]), len(coco["images"]), path)
    return str(path)


def _train_config(config: FinetuneConfig, model: GLIP, out: Path) -> TrainConfig:
    size = model.config.input
    return TrainConfig.from_dict({
        "model": {"config": model.config.name},
        "input": {"min_sizes": [size.min_size], "max_size": size.max_size, "flip_prob": 0.5},
        "optim": {"lr": config.lr if config.lr is not None else DEFAULT_LR[config.mode],
                  "language_lr": config.language_lr, "warmup_steps": min(config.warmup_steps, config.steps // 2),
                  "schedule": "cosine", "weight_decay": 0.0 if config.mode == "prompt" else 1e-4},
        "train": {"max_steps": config.steps, "batch_size": config.batch_size, "ema_decay": None,
                  "seed": config.seed, "num_workers": 0, "device": config.device, "amp": "off"},
        "output": {"dir": str(out), "checkpoint_every": max(config.steps // 2, 1), "keep_last": 1,
                   "log_every": max(min(20, config.steps // 5), 1), "tensorboard": False,
                   "progress": config.progress},
    })


def prepare_model(model: GLIP, mode: str) -> list[str]:
    """Enable what ``mode`` trains and freeze everything else; returns the trained parameter names."""
    if mode not in MODES:
        raise TaskError(f"unknown mode '{mode}': use one of {', '.join(MODES)}")
    if mode == "prompt":
        model.enable_prompt_embedding(model.config.text.max_length)
    names = set(trainable_names(model, mode))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in names)
    return sorted(names)


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Tune, save and evaluate as ``config`` says; returns (and writes) ``result.json``'s content."""
    check_training_set(config.train)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_base_model(config.weights)
    base_fingerprint = model_fingerprint(model)
    max_length = model.config.text.max_length
    overrides = load_prompt_overrides(config.prompt_overrides)
    train_file = _few_shot_file(config, out)
    images = config.train_images or str(Path(config.train).parent)
    task = load_task(train_file, images, overrides, max_length)
    val_task = load_task(config.val, config.val_images, overrides, max_length) if config.val else None
    if val_task is not None:
        check_same_categories(task, val_task, "validation")
    trained = prepare_model(model, config.mode)
    train_config = _train_config(config, model, out)
    dataset = CocoDetectionDataset(
        train_file, images, max_prompt_tokens=None, seed=config.seed, fixed_prompt=task.prompt,
        transform=build_train_transforms(train_config.input.min_sizes, train_config.input.max_size,
                                         train_config.input.flip_prob, config=model.config.input))
    if len(dataset) < train_config.train.batch_size:  # e.g. 1 shot of 3 categories: 3 images
        logger.info("batch size %d -> %d: the training set has %d images", train_config.train.batch_size,
                    len(dataset), len(dataset))
        train_config.train.batch_size = len(dataset)
    trainer = Trainer(train_config, dataset=SkipUnreadable(dataset), model=model)
    started = time.perf_counter()
    trainer.fit(resume=config.resume, export=False)
    seconds = time.perf_counter() - started
    files = save_task(trainer.model, task, config.mode, trained, base_fingerprint, out, config)
    result: dict[str, Any] = {
        "mode": config.mode, "shots": config.shots, "seed": config.seed, "steps": config.steps,
        "train_images": len(dataset), "trainable_parameters": sum(
            p.numel() for n, p in trainer.model.named_parameters() if n in set(trained)),
        "file": str(files), "file_bytes": files.stat().st_size, "train_seconds": round(seconds, 1),
        "base_fingerprint": base_fingerprint, "prompt": task.prompt.caption, **config.extra,
    }
    if val_task is not None:
        result["metrics"] = evaluate_tuned(config, files, val_task)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def save_task(model: GLIP, task: Task, mode: str, trained: list[str], base_fingerprint: str, out: Path,
              config: FinetuneConfig) -> Path:
    """``adapter.safetensors`` (prompt, linear) or ``model.safetensors`` + ``task.json`` (full)."""
    categories = [AdapterCategory(c.id, c.name) for c in task.dataset.categories]
    if mode == "full":
        from glip.checkpoint import save_glip

        path = save_glip(model, out / "model.safetensors", {"source": "glip finetune --mode full"})
        (out / "task.json").write_text(json.dumps({"prompt": asdict(task.prompt), "categories": [
            asdict(c) for c in categories]}, indent=2) + "\n")
        return path
    state = dict(model.named_parameters())
    adapter = Adapter(tensors={name: state[name].detach().clone() for name in trained}, prompt=task.prompt,
                      categories=categories, mode=mode, base_fingerprint=base_fingerprint, name=out.name,
                      info={"shots": str(config.shots), "seed": str(config.seed), "steps": str(config.steps),
                            "train": config.train})
    return save_adapter(adapter, out / "adapter.safetensors")


def evaluate_tuned(config: FinetuneConfig, files: Path, val_task: Task) -> dict[str, Any]:
    """AP of the tuned task on the validation set: the base model reloaded with the adapter file
    (which checks the round trip and the fingerprint), or the fully tuned model."""
    device = config.device
    if config.mode == "full":
        predictor = GLIPPredictor.from_pretrained(files, device=device)
        name = None
    else:
        predictor = GLIPPredictor(load_base_model(config.weights), device=device)
        name = predictor.add_adapter(files).name
    with predictor.adapter_applied(name), torch.inference_mode():
        result = evaluate_detection(val_task.dataset, predictor, progress=config.progress)
    return {key: result.metrics[key] for key in ("AP", "AP50", "AP75")}
