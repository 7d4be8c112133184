"""Describing images with a model's caption head: images in, captions (and their truncation) out.

`Captioner` runs the image side once per image (`glip.modeling.caption_head.caption_context`), then
greedy or beam search (`glip.modeling.caption_decoding`) over the causal text pass, all images of a
batch together. Grounding the caption's noun phrases is the predictor's (`GLIPPredictor.caption`).

Example:
    >>> captioner = Captioner(model, load_tokenizer())  # doctest: +SKIP
    >>> captioner.describe(prepare_images(["scene.png"], model.config.input), beam=3)[0].text  # doctest: +SKIP
    'a red star above a blue ring'
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import torch

from glip.caption_tokens import CaptionVocabulary, decode_caption
from glip.images import ImageBatch
from glip.modeling.caption_decoding import beam_search, greedy_search
from glip.modeling.caption_head import caption_context, caption_logits, require_caption_model
from glip.modeling.glip import GLIP
from glip.prompts import extract_noun_phrases


@dataclass
class CaptionPhrase:
    """A noun phrase of a generated caption, grounded by the same model: its character span in the
    caption, and the best box the model finds for it (original-image pixels) with its score;
    ``bbox_xyxy`` and ``score`` are None when the model gives the phrase no box."""

    phrase: str
    span: list[int]
    bbox_xyxy: list[float] | None
    score: float | None


@dataclass
class ImageCaption:
    """One image's caption. ``truncated``: decoding reached the length limit before ending the
    caption (the text is then cut off). ``phrases``: filled when grounded, else empty."""

    image: str | None
    width: int
    height: int
    caption: str
    phrases: list[CaptionPhrase] = field(default_factory=list)
    truncated: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GeneratedCaption:
    text: str
    token_ids: list[int]
    score: float  # summed log-probability
    truncated: bool


class Captioner:
    """The model's caption head behind greedy/beam search (see the module docstring)."""

    def __init__(self, model: GLIP, tokenizer) -> None:
        require_caption_model(model)
        self.model = model
        self.tokenizer = tokenizer
        self.vocabulary = CaptionVocabulary.of(tokenizer)

    @torch.inference_mode()
    def describe(self, batch: ImageBatch, beam: int = 1, max_tokens: int | None = None) -> list[GeneratedCaption]:
        """A caption per image of ``batch`` (on the model's device); ``beam`` 1 is greedy search;
        ``max_tokens`` defaults to the model's ``caption.max_tokens`` and may not exceed it."""
        limit = self.model.config.caption.max_tokens
        max_tokens = limit if max_tokens is None else max_tokens
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= limit:
            raise ValueError(f"max_tokens must be a whole number within 1..{limit} (the model's caption.max_tokens), "
                             f"got {max_tokens!r}")
        context = caption_context(self.model, self.model.encode_images(batch.tensor))

        def step(prefixes: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
            mask = torch.ones_like(prefixes)
            logits = caption_logits(self.model, context.select(images), prefixes, mask)[:, -1]  # [R, V]
            return logits.float().log_softmax(dim=-1)

        vocabulary = self.vocabulary
        options = dict(num_images=len(batch.image_sizes), bos_id=vocabulary.bos_id, eos_id=vocabulary.eos_id,
                       max_tokens=max_tokens, banned_ids=vocabulary.banned_ids, device=batch.tensor.device)
        decoded = greedy_search(step, **options) if beam == 1 else beam_search(step, beam=beam, **options)
        return [GeneratedCaption(decode_caption(self.tokenizer, d.token_ids), d.token_ids, d.score, d.truncated)
                for d in decoded]


def caption_noun_phrases(caption: str) -> list[tuple[int, int]]:
    """The noun-phrase spans of a generated caption (spaCy), trimmed of spaces; [] when it has none.

    Raises:
        RuntimeError: spaCy or its English model is missing.
    """
    if not caption.strip():
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spans = extract_noun_phrases(caption)
    if caught:  # the whole-caption fallback: no parser, or no noun phrase
        if "not installed" in str(caught[0].message):
            raise RuntimeError('grounded captions need spaCy and its English model to find the noun phrases: '
                               'pip install "glip[spacy]"')
        return []
    trimmed = []
    for start, end in spans:
        text = caption[start:end]
        trimmed.append((start + len(text) - len(text.lstrip()), end - (len(text) - len(text.rstrip()))))
    return trimmed
