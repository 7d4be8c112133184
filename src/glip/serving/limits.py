"""Limits on the work one request can cause, checked before the model runs.

A detection costs one head pass per prompt chunk, so a long class list is a long request: 5,000
names make 400 chunks of glip-nano, two minutes of the single model worker. `check_prompt` refuses
such a request with 413 (`RequestTooLarge`), going from the cheap checks to the less cheap: the
number of class names and the prompt's characters (nothing tokenised yet), then the caption's
tokens, then the prompt chunks (`GLIPPredictor.build_prompts`: tokenisation only).
"""

from __future__ import annotations

from glip.predictor import GLIPPredictor
from glip.prompts import count_prompt_tokens
from glip.serving.config import ServeConfig
from glip.serving.schemas import DetectKey, PromptError


class RequestTooLarge(ValueError):
    """A request over one of the server's limits: answered 413 (malformed requests get 422)."""


def prompt_chars(key: DetectKey) -> int:
    """Characters of prompt text: the class names joined by ``", "``, or the caption and its phrases."""
    if key.classes is not None:
        return len(", ".join(key.classes))
    return len(key.caption or "") + sum(len(phrase) for phrase in key.phrases or ())


def check_prompt(key: DetectKey, predictor: GLIPPredictor, config: ServeConfig) -> int:
    """The number of prompt chunks of ``key``, once it is known to fit the server's limits.

    Raises:
        RequestTooLarge: too many classes, prompt characters, caption tokens or prompt chunks.
        PromptError: a prompt the predictor cannot build (a phrase not in the caption, classes
            that are not the adapter's, ...).
    """
    if key.classes is not None and len(key.classes) > config.max_classes:
        raise RequestTooLarge(f"{len(key.classes)} classes in one request; this server takes at most "
                              f"{config.max_classes}: split them over several requests (or start the server "
                              "with a larger --max-classes)")
    chars = prompt_chars(key)
    if chars > config.max_prompt_chars:
        raise RequestTooLarge(f"the prompt is {chars} characters; this server takes at most "
                              f"{config.max_prompt_chars}: send fewer or shorter names, or a shorter caption")
    if key.caption is not None:
        tokens = count_prompt_tokens(key.caption, predictor.tokenizer)
        if tokens > predictor.max_length:
            raise RequestTooLarge(f"the caption is {tokens} tokens; the model reads at most {predictor.max_length} "
                                  "(max_text_tokens in GET /v1/models): shorten it")
    try:
        chunks = predictor.build_prompts(list(key.classes) if key.classes else None, key.caption,
                                         list(key.phrases) if key.phrases else None, key.adapter)
    except ValueError as error:
        raise PromptError(str(error)) from error
    if len(chunks) > config.max_prompt_chunks:
        fitting = len(key.classes or ()) * config.max_prompt_chunks // len(chunks)
        raise RequestTooLarge(f"{len(key.classes or ())} classes make {len(chunks)} prompt chunks (one model pass "
                              f"each); this server runs at most {config.max_prompt_chunks} per image: send about "
                              f"{fitting} classes per request (or start the server with a larger "
                              "--max-prompt-chunks)")
    return len(chunks)
