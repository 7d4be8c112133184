"""Checks on annotation records, and the policy for a record that fails them.

A malformed record is never trained on silently. Each dataset checks its records when it is built
and hands every failure to a `RecordErrors` log, whose policy decides:

- ``on_error="raise"``: raise `DataError` at once; the message starts with where the record is
  (``"train.jsonl:17"`` or ``"instances.json#annotation 42"``);
- ``on_error="skip"``: drop the record, log a warning with the same text (the first
  ``MAX_LOGGED`` of them; all are kept in ``RecordErrors.messages``) and, once the file is read,
  a summary that counts the skipped records by kind of fault.

Example:
    >>> errors = RecordErrors("raise", "train.jsonl")
    >>> try:
    ...     check_span("a cat", (2, 9))
    ... except DataError as error:
    ...     errors.reject("train.jsonl:3", error)
    Traceback (most recent call last):
    glip.data.validation.DataError: train.jsonl:3: span (2, 9) ends beyond the caption of 5 characters: 'a cat'
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

OnError = Literal["skip", "raise"]
ON_ERROR_CHOICES = ("skip", "raise")

# Boxes may overshoot the image by this many pixels (rounding in annotation tools); they are clipped.
BOX_TOLERANCE = 1.0
# Individual warnings logged per file under "skip"; the summary counts all of them.
MAX_LOGGED = 20


class DataError(ValueError):
    """A record of a training data file is malformed; the message says where and what.

    Attributes:
        kind: a short name of the fault (``"box outside the image"``), used to count them.
    """

    def __init__(self, message: str, kind: str = "malformed record") -> None:
        super().__init__(message)
        self.kind = kind


def check_on_error(on_error: str) -> OnError:
    """Validate an ``on_error`` policy string."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error  # type: ignore[return-value]


class RecordErrors:
    """Applies the ``on_error`` policy to the faulty records of one annotation file.

    Args:
        on_error: ``"skip"`` drops faulty records with a warning, ``"raise"`` raises `DataError`.
        file: the annotation file, named in the summary.
    """

    def __init__(self, on_error: str, file: str | Path) -> None:
        self.on_error = check_on_error(on_error)
        self.file = str(file)
        self.counts: Counter[str] = Counter()
        self.messages: list[str] = []

    def reject(self, source: str, error: DataError) -> None:
        """Report the faulty record at ``source``: raise, or log it and count it."""
        message = f"{source}: {error}"
        if self.on_error == "raise":
            raise DataError(message, error.kind) from error
        self.counts[error.kind] += 1
        self.messages.append(message)
        if len(self.messages) <= MAX_LOGGED:
            logger.warning("skipping %s", message)
        elif len(self.messages) == MAX_LOGGED + 1:
            logger.warning("%s: more faulty records; only the count is logged from now on", self.file)

    @property
    def num_skipped(self) -> int:
        return len(self.messages)

    def summarize(self, num_records: int, num_kept: int) -> None:
        """Log how many records were skipped and why; refuse a file with nothing left to train on."""
        if self.num_skipped:
            kinds = ", ".join(f"{count} {kind}" for kind, count in self.counts.most_common())
            logger.warning(
                "%s: skipped %d faulty record(s) (%s); kept %d of %d records",
                self.file, self.num_skipped, kinds, num_kept, num_records,
            )
        if num_kept == 0 and self.num_skipped > 0:
            raise DataError(
                f"{self.file}: all {num_records} records were skipped as faulty; first fault: "
                f"{self.messages[0] if self.messages else 'none'}",
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
