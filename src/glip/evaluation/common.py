"""Shared pieces of the evaluation package: its error type, fault counting and JSON helpers."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Examples named in an error message; the count always covers all of them.
MAX_EXAMPLES = 5


class EvaluationError(ValueError):
    """Input that would make a metric wrong (unknown ids, duplicates, missing images, ...).

    The message says what is wrong, how often, and shows the first few offenders.
    """


def examples(values: Iterable[object], limit: int = MAX_EXAMPLES) -> str:
    """``"a, b, c"`` for the first ``limit`` distinct values, with ``", ..."`` when there are more."""
    seen: list[object] = []
    for value in values:
        if value not in seen:
            seen.append(value)
        if len(seen) > limit:
            break
    shown = ", ".join(repr(v) for v in seen[:limit])
    return shown + (", ..." if len(seen) > limit else "")


class FaultLog:
    """Faults found while checking a file, grouped by kind, reported together in one error.

    Example:
        >>> log = FaultLog("preds.json")
        >>> log.add("unknown image id", 7)
        >>> log.add("unknown image id", 8)
        >>> log.message()
        'preds.json: 2 records with an unknown image id (7, 8)'
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, list[object]] = {}
        self.hints: dict[str, str] = {}

    def add(self, kind: str, example: object, hint: str | None = None) -> None:
        self.counts[kind] += 1
        bucket = self.samples.setdefault(kind, [])
        if len(bucket) <= MAX_EXAMPLES and example not in bucket:
            bucket.append(example)
        if hint:
            self.hints.setdefault(kind, hint)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def message(self) -> str:
        parts = []
        for kind, count in self.counts.items():
            article = "an" if kind[0] in "aeiou" else "a"
            text = f"{count} record{'s' if count > 1 else ''} with {article} {kind} ({examples(self.samples[kind])})"
            if kind in self.hints:
                text += f" - {self.hints[kind]}"
            parts.append(text)
        return f"{self.source}: " + "; ".join(parts)

    def raise_if_any(self) -> None:
        if self.counts:
            raise EvaluationError(self.message())


def read_json(path: str | Path, what: str) -> Any:
    """Read a JSON file; a missing or invalid file is an `EvaluationError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{what} {str(path)!r} does not exist")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise EvaluationError(f"{path}: not UTF-8 text ({exc.reason})") from None


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_id(value: object) -> bool:
    """An image or category id: an int (not a bool) or a str."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


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
