"""argparse value types shared by the command lines: each turns a bad value into argparse's one-line
usage error naming the option, before anything is loaded."""

from __future__ import annotations

import argparse
import re


def _number(text: str, kind: type) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """A number above 0."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def fraction(text: str, low_open: bool = False, high_open: bool = False) -> float:
    """A number within [0, 1]; ``low_open``/``high_open`` exclude 0 or 1."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0 or (low_open and value == 0) or (high_open and value == 1):
        raise argparse.ArgumentTypeError(f"must be within {'(' if low_open else '['}0, 1{')' if high_open else ']'}, "
                                         f"got {text}")
    return value


def probability(text: str) -> float:
    """A number within [0, 1]."""
    return fraction(text)


def device_name(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it is usable is checked later)."""
    if re.fullmatch(r"cpu|cuda|cuda:\d+|mps", text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda, cuda:N (e.g. cuda:1) or mps")
