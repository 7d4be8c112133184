"""Shared pieces of the evaluation package: its error type, its fault collector and JSON helpers.

Records are checked with the data package's readers and collector (`glip.data.coco_json`,
`glip.data.validation.RecordErrors`); evaluation's policy is ``"raise_all"``: a skipped record
would change a metric, so every fault of a file is counted and raised in one `EvaluationError`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from glip.data.coco_json import is_id, is_number, read_json_file
from glip.data.validation import MAX_EXAMPLES, DataError, RecordErrors, examples

__all__ = ["MAX_EXAMPLES", "EvaluationError", "dumps_readable", "examples", "fault_collector", "is_id",
           "is_number", "json_ready", "read_json"]


class EvaluationError(DataError):
    """Input that would make a metric wrong (unknown ids, duplicates, missing images, ...).

    The message says what is wrong, how often, and shows the first few offenders.
    """


def fault_collector(source: str) -> RecordErrors:
    """The collector of a file read for evaluation: every fault gathered, then raised together.

    Example:
        >>> faults = fault_collector("preds.json")
        >>> faults.add("unknown image id", 7)
        >>> faults.add("unknown image id", 8)
        >>> faults.summary()
        'preds.json: 2 records with an unknown image id (7, 8)'
    """
    return RecordErrors("raise_all", source, EvaluationError)


def read_json(path: str | Path, what: str) -> Any:
    """Read a JSON file; a missing or invalid file is an `EvaluationError` naming it."""
    return read_json_file(path, what, EvaluationError)


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed YAML file ``path`` (``what`` names it in errors: a missing file, invalid YAML)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise EvaluationError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None


def json_ready(value: Any) -> Any:
    """Turn numpy scalars/arrays, paths and NaN into plain JSON values (NaN -> None)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_readable(data: Any, level: int = 0) -> str:
    """Indented JSON in which every list of plain numbers stays on one line."""
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(data, dict) and data:
        items = [f"{inner}{json.dumps(str(k))}: {dumps_readable(v, level + 1)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list) and data and not all(v is None or isinstance(v, (int, float)) for v in data):
        items = [f"{inner}{dumps_readable(v, level + 1)}" for v in data]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(data)
