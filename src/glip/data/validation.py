"""Checks on annotation records, and the one collector of faulty records for training and evaluation.

A malformed record is never read silently. Each reader checks its records and hands every failure
to a `RecordErrors` collector (the file, the record, what is wrong and how to fix it), whose
``on_error`` policy decides:

- ``"raise"``: raise `DataError` at once; the message starts with where the record is
  (``"train.jsonl:17"`` or ``"instances.json#annotation 42"``);
- ``"skip"``: drop the record, log a warning with the same text (the first ``MAX_LOGGED`` of
  them; all are kept in ``RecordErrors.messages``) and, once the file is read, a summary that
  counts the skipped records by kind of fault;
- ``"raise_all"``: read the whole file, then raise one error that counts the faults by kind with
  the first few offenders (evaluation: a skipped record would change the metric's denominator).

Example:
    >>> errors = RecordErrors("raise", "train.jsonl")
    >>> try:
    ...     check_span("a cat", (2, 9))
    ... except DataError as error:
    ...     errors.reject("train.jsonl:3", error)
    Traceback (most recent call last):
    glip.data.validation.DataError: train.jsonl:3: span (2, 9) ends beyond the caption of 5 characters: 'a cat'
    >>> errors = RecordErrors("raise_all", "preds.json")
    >>> errors.reject("preds.json#7", DataError("unknown image id 7", "unknown image id"), example=7)
    >>> errors.reject("preds.json#8", DataError("unknown image id 8", "unknown image id"), example=8)
    >>> errors.summary()
    'preds.json: 2 records with an unknown image id (7, 8)'
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

OnError = Literal["skip", "raise", "raise_all"]
# The policies a training data entry may choose (evaluation always uses "raise_all").
ON_ERROR_CHOICES = ("skip", "raise")
POLICIES = ("skip", "raise", "raise_all")

# Boxes may overshoot the image by this many pixels (rounding in annotation tools); they are clipped.
BOX_TOLERANCE = 1.0
# Individual warnings logged per file under "skip"; the summary counts all of them.
MAX_LOGGED = 20
# Offenders named per kind of fault in a "raise_all" error; the count always covers all of them.
MAX_EXAMPLES = 5


class DataError(ValueError):
    """A record of a data file is malformed; the message says where and what.

    Attributes:
        kind: a short name of the fault (``"box outside the image"``), used to count them.
        hint: how to fix it, when the message alone does not say.
    """

    def __init__(self, message: str, kind: str = "malformed record", hint: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.hint = hint


def check_on_error(on_error: str, choices: Sequence[str] = POLICIES) -> OnError:
    """Validate an ``on_error`` policy string."""
    if on_error not in choices:
        raise ValueError(f"on_error must be one of {tuple(choices)}, got {on_error!r}")
    return on_error  # type: ignore[return-value]


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


class RecordErrors:
    """Collects the faulty records of one file and applies the ``on_error`` policy to them.

    Args:
        on_error: ``"skip"``, ``"raise"`` or ``"raise_all"`` (see the module docstring).
        file: the file, named in the summary.
        error_type: the exception raised (`DataError` or a subclass such as evaluation's).
    """

    def __init__(self, on_error: str, file: str | Path, error_type: type[DataError] = DataError) -> None:
        self.on_error = check_on_error(on_error)
        self.file = str(file)
        self.error_type = error_type
        self.counts: Counter[str] = Counter()
        self.messages: list[str] = []
        self.samples: dict[str, list[object]] = {}
        self.hints: dict[str, str] = {}

    def reject(self, record: str, error: DataError, example: object = None) -> None:
        """Report the faulty record at ``record``: raise, or keep it (with ``example``, the value
        a ``"raise_all"`` summary shows for it; default: the whole message)."""
        message = f"{record}: {error}" + (f" - {error.hint}" if error.hint else "")
        if self.on_error == "raise":
            raise self.error_type(message, error.kind, error.hint) from error
        self.counts[error.kind] += 1
        self.messages.append(message)
        bucket = self.samples.setdefault(error.kind, [])
        example = message if example is None else example
        if len(bucket) <= MAX_EXAMPLES and example not in bucket:
            bucket.append(example)
        if error.hint:
            self.hints.setdefault(error.kind, error.hint)
        if self.on_error == "raise_all":
            return
        if len(self.messages) <= MAX_LOGGED:
            logger.warning("skipping %s", message)
        elif len(self.messages) == MAX_LOGGED + 1:
            logger.warning("%s: more faulty records; only the count is logged from now on", self.file)

    def add(self, kind: str, example: object, hint: str | None = None) -> None:
        """Report a fault known by its kind and the offending value (``"unknown image id"``, ``7``)."""
        self.reject(f"{self.file}: record {example!r}", DataError(kind, kind, hint), example)

    def fail(self, message: str, kind: str = "malformed file") -> NoReturn:
        """A fault of the whole file (not of one record): always raised, prefixed with the file."""
        raise self.error_type(f"{self.file}: {message}", kind)

    def __bool__(self) -> bool:
        return bool(self.counts)

    @property
    def num_skipped(self) -> int:
        return len(self.messages)

    def summary(self) -> str:
        """The faults by kind: ``"f.json: 2 records with an unknown image id (7, 8) - hint"``."""
        parts = []
        for kind, count in self.counts.items():
            article = "an" if kind[0] in "aeiou" else "a"
            text = f"{count} record{'s' if count > 1 else ''} with {article} {kind} ({examples(self.samples[kind])})"
            if kind in self.hints:
                text += f" - {self.hints[kind]}"
            parts.append(text)
        return f"{self.file}: " + "; ".join(parts)

    def raise_if_any(self) -> None:
        """Under ``"raise_all"``, raise one error naming every kind of fault collected so far."""
        if self.counts and self.on_error == "raise_all":
            raise self.error_type(self.summary(), "faulty records")

    def summarize(self, num_records: int, num_kept: int) -> None:
        """End of the file: raise what ``"raise_all"`` collected, else log how many records were
        skipped and why; refuse a file with nothing left to read."""
        self.raise_if_any()
        if self.num_skipped:
            kinds = ", ".join(f"{count} {kind}" for kind, count in self.counts.most_common())
            logger.warning(
                "%s: skipped %d faulty record(s) (%s); kept %d of %d records",
                self.file, self.num_skipped, kinds, num_kept, num_records,
            )
        if num_kept == 0 and self.num_skipped > 0:
            raise self.error_type(
                f"{self.file}: all {num_records} records were skipped as faulty; first fault: {self.messages[0]}",
                "empty dataset",
            )


def check_image_file(path: Path) -> None:
    """The image file must exist (a cheap ``is_file``; the pixels are read only when trained on)."""
    if not path.is_file():
        raise DataError(f"image file {str(path)!r} does not exist", "missing image")


def read_image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header only (no pixel decoding), as stored in the file."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"image {str(path)!r} is unreadable ({exc})", "unreadable image") from exc
    if width <= 0 or height <= 0:
        raise DataError(f"image {str(path)!r} has zero size {width}x{height}", "unreadable image")
    return int(width), int(height)


def check_image_size(width: object, height: object) -> tuple[int, int]:
    """A recorded image size must be two positive integers."""
    try:
        w, h = int(width), int(height)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise DataError(f"image size {width!r}x{height!r} is not two integers", "bad image size") from None
    if w <= 0 or h <= 0 or w != width or h != height:
        raise DataError(f"image size {width!r}x{height!r} is not two positive integers", "bad image size")
    return w, h


def check_box(box: Sequence[float], width: int, height: int, tolerance: float = BOX_TOLERANCE) -> np.ndarray:
    """Check an ``x1, y1, x2, y2`` box in a ``width x height`` image and clip it to the image.

    A box may overshoot the image by ``tolerance`` pixels (it is clipped); beyond that, or with
    ``x2 <= x1`` or ``y2 <= y1`` (before or after clipping), it is a `DataError`.

    Returns:
        ``[4]`` float32, the clipped box.
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise DataError(f"box {box!r} is not four numbers", "bad box") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise DataError(f"box {box!r} is not four finite numbers", "bad box")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"box {_fmt(values)} is empty (needs x2 > x1 and y2 > y1)", "empty box")
    if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
        raise DataError(
            f"box {_fmt(values)} lies outside the {width}x{height} image "
            f"(beyond the {tolerance:g}-pixel tolerance)",
            "box outside the image",
        )
    clipped = np.array([max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)], dtype=np.float32)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise DataError(
            f"box {_fmt(values)} is empty once clipped to the {width}x{height} image", "box outside the image"
        )
    return clipped


def check_span(caption: str, span: object) -> tuple[int, int]:
    """A ``[start, end)`` character span must be non-empty, inside the caption and not blank."""
    if (
        not isinstance(span, (list, tuple))
        or len(span) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
    ):
        raise DataError(f"span {span!r} is not a [start, end] pair of integers", "bad span")
    start, end = span
    if start < 0 or end > len(caption):
        where = "starts before" if start < 0 else "ends beyond"
        raise DataError(
            f"span ({start}, {end}) {where} the caption of {len(caption)} characters: {caption!r}",
            "span outside the caption",
        )
    if end <= start:
        raise DataError(f"span ({start}, {end}) is empty in the caption {caption!r}", "empty span")
    if not caption[start:end].strip():
        raise DataError(f"span ({start}, {end}) covers only whitespace in {caption!r}", "empty span")
    return start, end


def check_spans(caption: str, spans: object) -> list[tuple[int, int]]:
    """A phrase's list of spans: at least one, each checked by :func:`check_span`."""
    if not isinstance(spans, (list, tuple)) or len(spans) == 0:
        raise DataError(f"phrase spans {spans!r} are not a non-empty list of [start, end] pairs", "bad span")
    return [check_span(caption, span) for span in spans]


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
