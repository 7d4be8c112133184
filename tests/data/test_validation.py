"""Record checks and the skip/raise policy."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from glip.data.validation import DataError, RecordErrors, check_box, check_image_size, check_span, check_spans


def test_check_box():
    np.testing.assert_allclose(check_box([-1, -0.5, 65, 48.9], 64, 48), [0, 0, 64, 48])
    with pytest.raises(DataError, match="outside the 64x48 image") as info:
        check_box([0, 0, 66, 10], 64, 48)
    assert info.value.kind == "box outside the image"
    with pytest.raises(DataError, match="empty"):
        check_box([5, 5, 5, 9], 64, 48)
    with pytest.raises(DataError, match="four finite"):
        check_box([0, 0, float("nan"), 3], 64, 48)
    with pytest.raises(DataError, match="not four numbers"):
        check_box(["a", 0, 1, 3], 64, 48)


def test_check_span():
    assert check_span("a cat", [2, 5]) == (2, 5)
    with pytest.raises(DataError, match="ends beyond the caption of 5"):
        check_span("a cat", [2, 6])
    with pytest.raises(DataError, match="starts before"):
        check_span("a cat", [-1, 2])
    with pytest.raises(DataError, match="empty"):
        check_span("a cat", [3, 3])
    with pytest.raises(DataError, match="whitespace"):
        check_span("a cat", [1, 2])
    with pytest.raises(DataError, match="pair of integers"):
        check_span("a cat", [1.5, 2])
    with pytest.raises(DataError, match="non-empty list"):
        check_spans("a cat", [])


def test_check_image_size():
    assert check_image_size(64, 48.0) == (64, 48)
    for bad in [(0, 4), (None, 4), ("64", 4), (6.5, 4)]:
        with pytest.raises(DataError):
            check_image_size(*bad)


def test_record_errors_policy(caplog):
    errors = RecordErrors("skip", "f.json")
    with caplog.at_level(logging.WARNING, logger="glip.data"):
        for line in range(1, 26):
            errors.reject(f"f.json:{line}", DataError("bad", "empty box"))
        errors.summarize(30, 5)
    assert errors.num_skipped == 25 and errors.counts["empty box"] == 25
    assert "skipping f.json:20: bad" in caplog.text and "f.json:21" not in caplog.text
    assert "skipped 25 faulty record(s) (25 empty box); kept 5 of 30 records" in caplog.text
    with pytest.raises(DataError, match="^f.json:3: bad$"):
        RecordErrors("raise", "f.json").reject("f.json:3", DataError("bad"))
    with pytest.raises(ValueError, match="on_error"):
        RecordErrors("ignore", "f.json")


def test_record_errors_raise_all_counts_every_fault_with_examples(caplog):
    class FileError(DataError):
        pass

    errors = RecordErrors("raise_all", "gt.json", FileError)
    with caplog.at_level(logging.WARNING, logger="glip.data"):
        for image_id in (7, 8, 8, 9, 10, 11, 12, 13):
            errors.reject(f"gt.json#image {image_id}", DataError("duplicate", "duplicate image id", "ids must be unique"),
                          image_id)
        errors.add("bbox that is not [x, y, w, h]", 42)
    assert caplog.text == ""  # nothing is logged: it is all in the error
    with pytest.raises(FileError) as error:
        errors.summarize(10, 2)
    assert str(error.value) == ("gt.json: 8 records with a duplicate image id (7, 8, 9, 10, 11, ...) - ids must be "
                                "unique; 1 record with a bbox that is not [x, y, w, h] (42)")
    clean = RecordErrors("raise_all", "gt.json")
    clean.summarize(3, 3)  # no fault: nothing raised
    with pytest.raises(DataError, match="^gt.json: the file is empty$"):
        clean.fail("the file is empty")
