"""A transfer task: its categories, their (optionally engineered) prompts, and the one fixed prompt.

Prompt engineering: a YAML maps a category (name or id) to a descriptive prompt, read by
`glip.evaluation.prompt_overrides.load_prompt_overrides` as evaluation reads it.

The task prompt is built exactly as evaluation builds it (`glip.evaluation.prompts.build_prompt`),
so a prompt tuned in training is the very prompt met at evaluation and inference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glip.data.coco_json import read_json_file
from glip.evaluation.detection_data import DetectionDataset, load_detection_dataset
from glip.evaluation.prompts import build_prompt
from glip.prompts import Prompt, tokenize_prompt
from glip.tokenizer import load_tokenizer


class TaskError(ValueError):
    """A task that cannot be tuned or evaluated as asked."""


def check_training_set(annotation_file: str | os.PathLike) -> None:
    """Refuse a training file with no images or no boxes before anything is built from it (its
    records are checked by `load_task`)."""
    path = Path(annotation_file)
    if not path.is_file():
        raise TaskError(f"training file {path} does not exist")
    data = read_json_file(path, "training file")
    if not isinstance(data, dict) or not data.get("images") or not data.get("annotations"):
        raise TaskError(f"the training set {path} is empty (no images or no boxes): nothing to tune on")


@dataclass
class Task:
    """The categories of a detection dataset and the fixed prompt that names them all, in order."""

    dataset: DetectionDataset
    prompt: Prompt

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.dataset.categories]


def load_task(annotation_file: str | os.PathLike, image_dir: str | os.PathLike | None,
              overrides: dict[Any, Any] | None, max_length: int) -> Task:
    """Read a COCO detection file as a task; its prompt must fit the model's text window whole."""
    dataset = load_detection_dataset(annotation_file, image_dir, prompts=overrides)
    prompt = build_prompt([c.prompt for c in dataset.categories])
    try:
        tokenize_prompt(prompt, max_length, load_tokenizer())
    except ValueError as error:
        raise TaskError(f"{annotation_file}: the task prompt of {len(dataset.categories)} categories does not fit: "
                        f"{error}; a tuned task needs one prompt: use fewer categories or shorter prompts") from None
    return Task(dataset, prompt)


def check_same_categories(train: Task, other: Task, what: str) -> None:
    """The two tasks name the same categories with the same prompt (required to evaluate a tuned task)."""
    if train.category_names != other.category_names or train.prompt.caption != other.prompt.caption:
        raise TaskError(f"the {what} categories {other.category_names} (prompt {other.prompt.caption!r}) differ from "
                        f"the training task's {train.category_names} (prompt {train.prompt.caption!r})")
