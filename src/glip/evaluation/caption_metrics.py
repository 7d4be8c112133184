"""Captioning metrics: BLEU-4 and CIDEr-D with the COCO caption evaluation's own scorers.

The scores come from pycocoevalcap's pure-Python BLEU and CIDEr scorers (its ``Cider`` is CIDEr-D:
a Gaussian length penalty, clipped n-gram counts, times 10), so they are the numbers of the COCO
caption leaderboard. Its Java parts are not used: `ptb_tokenize` stands in for the Stanford PTB
tokenizer the COCO evaluation runs first, and gives its tokens for plain English text
(lower-cased; clitics split off, "don't" -> "do n't"; punctuation tokens dropped, as the
evaluation drops them after tokenising). METEOR and SPICE need Java and are not computed.

CIDEr-D weighs n-grams by their document frequency over the evaluated references, so an image's
score depends on the whole set; BLEU-4 is corpus-level ("closest" reference length), like the
COCO evaluation's.

pycocoevalcap is an optional dependency: ``pip install "glip[caption]"``.

Example:
    >>> scores = caption_scores({1: ["a red star above a blue ring"], 2: ["two green squares"]},
    ...                         {1: "a red star above a blue ring", 2: "two green squares"})
    >>> round(scores.bleu4, 6)
    1.0
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from glip.data.captions import CaptionRecord
from glip.evaluation.common import EvaluationError, fault_collector, is_id, read_json

Id = Union[int, str]
CAPTION_EXTRA = 'caption metrics need pycocoevalcap: pip install "glip[caption]"'
# The tokens the COCO evaluation removes after the PTB tokenizer (pycocoevalcap's PUNCTUATIONS,
# with the brackets and quotes as the raw characters the tokenizer would have turned into them).
DROPPED_TOKENS = frozenset({"''", "'", "``", "`", "(", ")", "{", "}", ".", "?", "!", ",", ":", "-", "--", "...", ";",
                            '"', "-lrb-", "-rrb-", "-lcb-", "-rcb-"})
# Clitics split off their word as the PTB tokenizer does: "don't" -> "do n't", "it's" -> "it 's".
_NEGATION = re.compile(r"(?<=[a-z0-9])n't\b")
_CLITIC = re.compile(r"(?<=[a-z0-9])'(s|re|ve|ll|d|m)\b")
# Clitics, numbers with inner periods or commas ("3.5", "1,000"), words with inner hyphens
# ("well-known"), "..." and "--", then any other single non-space character.
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\d+(?:[.,]\d+)+|[a-z0-9]+(?:-[a-z0-9]+)*|\.\.\.|--|\S")


@dataclass
class CaptionScores:
    """BLEU-4 and CIDEr-D of candidate captions against references.

    Attributes:
        bleu4: corpus BLEU-4 in [0, 1].
        cider: mean CIDEr-D (0 to 10; about 1 for good COCO captioners).
        per_image_bleu4: each image's own BLEU-4.
        per_image_cider: each image's CIDEr-D.
    """

    bleu4: float
    cider: float
    per_image_bleu4: dict[Id, float] = field(default_factory=dict)
    per_image_cider: dict[Id, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"BLEU-4": self.bleu4, "CIDEr": self.cider, "images": len(self.per_image_cider)}


def ptb_tokenize(text: str) -> str:
    """The caption as the COCO evaluation sees it: lower-case tokens joined by spaces, no punctuation.

    Example:
        >>> ptb_tokenize("A red star, above the ring. It's big!")
        "a red star above the ring it 's big"
    """
    text = _CLITIC.sub(r" '\1", _NEGATION.sub(" n't", text.replace("\n", " ").lower()))
    tokens = _TOKEN.findall(text)
    return " ".join(token for token in tokens if token not in DROPPED_TOKENS)


def caption_scores(references: Mapping[Id, Sequence[str]], candidates: Mapping[Id, str]) -> CaptionScores:
    """BLEU-4 and CIDEr-D of one candidate caption per image against the image's references.

    Args:
        references: image id -> its reference captions (at least one each).
        candidates: image id -> the caption to score; the same images as ``references``.
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError:
        raise ImportError(CAPTION_EXTRA) from None
    faults = fault_collector("caption predictions")
    for image_id, captions in references.items():
        if not captions:
            faults.add("image without reference captions", image_id)
        elif image_id not in candidates:
            faults.add("image without predicted caption", image_id)
    for image_id in candidates:
        if image_id not in references:
            faults.add("prediction of an unknown image", image_id)
    faults.raise_if_any()
    if not references:
        raise EvaluationError("no images to score")
    ids = list(references)
    gts = {i: [ptb_tokenize(caption) for caption in references[image_id]] for i, image_id in enumerate(ids)}
    res = {i: [ptb_tokenize(candidates[image_id])] for i, image_id in enumerate(ids)}
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_per_image = Cider().compute_score(gts, res)
    return CaptionScores(float(bleu[3]), float(cider),
                         {image_id: float(bleu_per_image[3][i]) for i, image_id in enumerate(ids)},
                         {image_id: float(cider_per_image[i]) for i, image_id in enumerate(ids)})


def evaluate_captions(records: Sequence[CaptionRecord], candidates: Mapping[Id, str]) -> CaptionScores:
    """`caption_scores` of ``candidates`` (image id -> caption) against records read by
    `glip.data.captions.read_captions`."""
    return caption_scores({record.image_id: record.captions for record in records}, candidates)


def read_caption_predictions(path: str | Path) -> dict[Id, str]:
    """Image id -> caption from a COCO caption results file ``[{"image_id", "caption"}, ...]``."""
    data = read_json(path, "caption results file")
    faults = fault_collector(str(path))
    if not isinstance(data, list):
        faults.fail('not a caption results file (a list of {"image_id", "caption"} objects)')
    predictions: dict[Id, str] = {}
    for index, record in enumerate(data):
        if not isinstance(record, dict) or not is_id(record.get("image_id")) \
                or not isinstance(record.get("caption"), str):
            faults.add('record that is not an {"image_id", "caption": str} object', index)
        elif record["image_id"] in predictions:
            faults.add("duplicate image id", record["image_id"])
        else:
            predictions[record["image_id"]] = record["caption"]
    faults.raise_if_any()
    return predictions
