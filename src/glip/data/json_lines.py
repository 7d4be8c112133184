"""Reading a JSON Lines file of records that each carry a unique id (captions, VQA questions).

Blank lines are skipped; a line that is not JSON, that ``parse`` rejects or whose id repeats an
earlier line's goes to the file's `RecordErrors` (skipped or fatal by ``on_error``) under
``FILE:LINE``.

Example:
    >>> records = read_unique_json_lines(path, lambda value, line: value, key=lambda r: r["id"],
    ...                                  key_name="id")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

from glip.data.grounding import parse_json_line
from glip.data.validation import DataError, RecordErrors

Record = TypeVar("Record")


def read_unique_json_lines(path: Path, parse: Callable[[object, int], Record], key: Callable[[Record], Hashable],
                           key_name: str, on_error: str = "raise") -> list[Record]:
    """The records of ``path``: ``parse(value, line_number)`` for each line's JSON value.

    Args:
        key: a record's id; ids must be unique in the file.
        key_name: the id's field name, for messages ("question_id").
    """
    errors = RecordErrors(on_error, path)
    records: list[Record] = []
    seen: set[Hashable] = set()
    num_records = 0
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            num_records += 1
            try:
                record = parse(parse_json_line(line), line_number)
                if key(record) in seen:
                    raise DataError(f"{key_name} {key(record)!r} is not unique", f"duplicate {key_name.replace('_', ' ')}")
            except DataError as error:
                errors.reject(f"{path}:{line_number}", error)
                continue
            seen.add(key(record))
            records.append(record)
    errors.summarize(num_records, len(records))
    return records
