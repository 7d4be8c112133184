"""The phrases a teacher boxes in a caption: its noun phrases, found by spaCy.

Each occurrence is its own phrase, as a ``(start, end)`` character span into the unchanged caption.
Unlike `glip.prompts.extract_noun_phrases` (used for interactive detection), which falls back to the
whole caption, labelling treats a caption without noun phrases as a bad pair: boxing a whole
sentence would teach the student nothing about its words.

The official pipeline used an NLTK grammar ``<DT>?<JJ.*>*<NN.*>+`` over a lowercased caption; spaCy is
the project's one parser already (pip-installable English model, no data download at run time).
"""

from __future__ import annotations

import warnings

from glip.prompts import Span, extract_noun_phrases


class NoNounPhrase(ValueError):
    """A caption in which no noun phrase was found."""


def noun_phrases(caption: str) -> list[Span]:
    """The noun-phrase spans of ``caption``, in order.

    Raises:
        NoNounPhrase: the caption is empty or has no noun phrase.
        RuntimeError: spaCy or its English model is missing (see `require_parser`).

    Example:
        >>> noun_phrases("a red star above a blue ring")  # doctest: +SKIP
        [(0, 10), (17, 28)]
    """
    if not caption.strip():
        raise NoNounPhrase("empty caption")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spans = extract_noun_phrases(caption)
    if caught:  # extract_noun_phrases fell back to the whole caption
        if "not installed" in str(caught[0].message):
            raise RuntimeError(_MISSING_PARSER)
        raise NoNounPhrase(f"no noun phrase in the caption {caption!r}")
    return [_trimmed(caption, span) for span in spans]


def _trimmed(caption: str, span: Span) -> Span:
    """The span without surrounding whitespace (spaCy counts leading spaces into a first chunk)."""
    start, end = span
    text = caption[start:end]
    return start + len(text) - len(text.lstrip()), end - (len(text) - len(text.rstrip()))


_MISSING_PARSER = ('labelling needs spaCy and its English model to find noun phrases: '
                   'pip install "glip[spacy]"')


def require_parser() -> None:
    """Raise a one-line RuntimeError at once when spaCy or its English model is missing."""
    noun_phrases("a red star")
