"""A multi-dataset suite (ODinW-style): one YAML file listing datasets, each evaluated on its own.

Format (paths are relative to the YAML file)::

    name: odinw-mini                  # optional, for reports
    datasets:
      - name: aquarium
        annotations: aquarium/test/annotations.json
        images: aquarium/test         # default: the annotation file's folder
        task: detection               # detection (default for COCO JSON) or grounding
        prompts:                      # optional, by category name or id
          stingray: "stingray, which is flat and round"
          puffin: {prefix: "", phrase: "puffin", suffix: ", a black and white bird"}
        predictions: preds/aquarium.json   # optional: evaluate this file instead of running a model
        fixed_ap: false               # optional, detection only
      - name: pothole
        annotations: pothole/test.json

Each dataset keeps its own categories and prompts. The suite reports every dataset's numbers and
the mean AP over the detection datasets (each dataset weighs the same, as in ODinW).

Example:
    >>> suite = load_suite("odinw.yaml")  # doctest: +SKIP
    >>> [entry.name for entry in suite.entries]  # doctest: +SKIP
    ['aquarium', 'pothole']
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from glip.evaluation.common import EvaluationError, json_ready, read_yaml

ENTRY_KEYS = ("name", "annotations", "images", "task", "prompts", "predictions", "fixed_ap")
TASKS = ("detection", "grounding")


@dataclass
class SuiteEntry:
    name: str
    annotations: Path
    images: Path | None = None
    task: str | None = None  # None: from the file
    prompts: dict | None = None
    predictions: Path | None = None
    fixed_ap: bool | None = None


@dataclass
class Suite:
    name: str
    entries: list[SuiteEntry]
    source: str = "<memory>"


@dataclass
class SuiteResult:
    """Each dataset's result and the suite's summary (``mean_AP`` over detection datasets)."""

    name: str
    results: list[Any]  # DetectionResult | GroundingResult, in suite order
    metrics: dict[str, float | None]
    notes: list[str] = field(default_factory=list)
    timing: dict | None = None
    task: str = "suite"

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "results"}
        data["results"] = [result.to_dict() for result in self.results]
        return json_ready(data)


def summarize_suite(name: str, results: list[Any]) -> SuiteResult:
    aps = [r.metrics.get("AP") for r in results if r.task == "detection"]
    defined = [ap for ap in aps if ap is not None]
    metrics: dict[str, float | None] = {
        "mean_AP": sum(defined) / len(defined) if defined else None,
        "num_detection_datasets": len(aps),
        "num_grounding_datasets": sum(1 for r in results if r.task == "grounding"),
    }
    notes = []
    if len(defined) < len(aps):
        notes.append(f"{len(aps) - len(defined)} detection datasets have an undefined AP and are left out of the mean")
    seconds = [r.timing["seconds"] for r in results if r.timing]
    timing = {"seconds": round(sum(seconds), 3)} if seconds else None
    return SuiteResult(name, results, metrics, notes, timing)


def _path(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise EvaluationError(f"{where}: must be a path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _entry(raw: Any, position: int, base: Path, source: str) -> SuiteEntry:
    where = f"{source}: datasets[{position}]"
    if not isinstance(raw, dict):
        raise EvaluationError(f"{where}: must be a mapping with at least 'annotations'")
    unknown = set(raw) - set(ENTRY_KEYS)
    if unknown:
        raise EvaluationError(f"{where}: unknown keys {sorted(unknown)}; expected {list(ENTRY_KEYS)}")
    if "annotations" not in raw:
        raise EvaluationError(f"{where}: needs 'annotations' (the annotation file)")
    annotations = _path(raw["annotations"], base, f"{where}.annotations")
    name = raw.get("name", annotations.stem)
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise EvaluationError(f"{where}: 'name' must be a non-empty string without '/', got {name!r}")
    task = raw.get("task")
    if task is not None and task not in TASKS:
        raise EvaluationError(f"{where}: 'task' must be one of {list(TASKS)}, got {task!r}")
    prompts = raw.get("prompts")
    if prompts is not None and not isinstance(prompts, dict):
        raise EvaluationError(f"{where}: 'prompts' must map category names or ids to prompt texts")
    fixed_ap = raw.get("fixed_ap")
    if fixed_ap is not None and not isinstance(fixed_ap, bool):
        raise EvaluationError(f"{where}: 'fixed_ap' must be true or false")
    return SuiteEntry(
        name=name, annotations=annotations,
        images=_path(raw["images"], base, f"{where}.images") if raw.get("images") is not None else None,
        task=task, prompts=prompts,
        predictions=_path(raw["predictions"], base, f"{where}.predictions") if raw.get("predictions") else None,
        fixed_ap=fixed_ap,
    )


def load_suite(path: str | os.PathLike) -> Suite:
    """Read and check a suite YAML (see the module docstring)."""
    path = Path(path)
    data = read_yaml(path, "suite file")
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
        raise EvaluationError(f"{path}: a suite is a mapping with a 'datasets' list")
    unknown = set(data) - {"name", "datasets"}
    if unknown:
        raise EvaluationError(f"{path}: unknown keys {sorted(unknown)}; expected 'name' and 'datasets'")
    if not data["datasets"]:
        raise EvaluationError(f"{path}: the 'datasets' list is empty")
    entries = [_entry(raw, i, path.parent, str(path)) for i, raw in enumerate(data["datasets"])]
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EvaluationError(f"{path}: dataset names must be unique; repeated: {duplicates}")
    return Suite(str(data.get("name", path.stem)), entries, str(path))
