"""Prompt engineering: per-category prompts that replace a category's cleaned name.

A YAML (or a suite entry's ``prompts``) maps a category, by name or id, to a descriptive prompt:
a string (the whole text is the phrase scored) or ``{prefix, phrase (or name), suffix}`` (only
``phrase`` is scored, the rest is context, as in the official caption prompts)::

    stingray: stingray, which is flat and round
    ellipse: {phrase: ellipse, suffix: ", an oval"}

Evaluation and transfer read them the same way, so a prompt tuned in training is the prompt met
at evaluation and inference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glip.evaluation.common import EvaluationError, examples, read_yaml
from glip.prompts import PromptPiece, clean_name

if TYPE_CHECKING:
    from glip.evaluation.detection_data import Category

# What a prompt override may say: a string (the whole text is the phrase) or these keys.
PROMPT_KEYS = ("phrase", "name", "prefix", "suffix")


# How one category appears in the detection prompt: ``prefix + phrase + suffix``, scored on
# ``phrase`` only (the official ``{"prefix", "name", "suffix"}`` caption prompts): the chunker's piece.
CategoryPrompt = PromptPiece


def load_prompt_overrides(path: str | os.PathLike | None) -> dict[Any, Any] | None:
    """The ``category -> prompt`` mapping of a YAML file (None = no overrides)."""
    if path is None:
        return None
    path = Path(path)
    data = read_yaml(path, "prompt override file")
    if not isinstance(data, dict) or not data:
        raise EvaluationError(f"{path} must map category names (or ids) to prompts, e.g. 'ellipse: an oval ellipse'")
    return data


def parse_prompt_override(value: Any, where: str) -> CategoryPrompt:
    """``"text"`` or ``{"prefix", "phrase"/"name", "suffix"}`` -> `CategoryPrompt`."""
    if isinstance(value, str):
        if not value.strip():
            raise EvaluationError(f"{where}: the prompt text is empty")
        return CategoryPrompt(value.strip())
    if isinstance(value, Mapping):
        unknown = set(value) - set(PROMPT_KEYS)
        if unknown:
            raise EvaluationError(f"{where}: unknown keys {sorted(unknown)}; expected {list(PROMPT_KEYS)}")
        phrase = value.get("phrase", value.get("name"))
        prefix, suffix = value.get("prefix", ""), value.get("suffix", "")
        if not isinstance(phrase, str) or not phrase.strip():
            raise EvaluationError(f"{where}: needs a non-empty 'phrase' (or 'name')")
        if not isinstance(prefix, str) or not isinstance(suffix, str):
            raise EvaluationError(f"{where}: 'prefix' and 'suffix' must be strings")
        return CategoryPrompt(phrase.strip(), prefix, suffix)
    raise EvaluationError(f"{where}: must be a string or a mapping, got {type(value).__name__}")


def apply_prompt_overrides(categories: list[Category], prompts: Mapping[Any, Any], source: str) -> None:
    """Replace the prompt of the categories named (by id, name or cleaned name) in ``prompts``, in place."""
    by_key: dict[Any, Category] = {}
    for category in categories:
        by_key.setdefault(category.name, category)
        by_key.setdefault(clean_name(category.name), category)
    by_id = {c.id: c for c in categories}
    unknown = []
    for key, value in prompts.items():
        category = by_id.get(key)
        if category is None and isinstance(key, str) and key.strip().lstrip("-").isdigit():
            category = by_id.get(int(key))
        if category is None:
            category = by_key.get(key)
        if category is None:
            unknown.append(key)
            continue
        category.prompt = parse_prompt_override(value, f"{source}: prompt of category {key!r}")
    if unknown:
        raise EvaluationError(
            f"{source}: {len(unknown)} prompt overrides name no category ({examples(unknown)}); "
            f"categories are, e.g., {examples(c.name for c in categories)}"
        )
