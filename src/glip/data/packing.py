"""Caption packing: a caption sample trained with other samples' captions beside it, as negatives.

The official GLIP recipe for caption data (pseudo-labelled web pairs): each read of a sample draws
how many captions of *other* records join its own, with probability ``no_negatives_prob`` (0.4)
none, ``all_negatives_prob`` (0.3) ``max_negatives`` (20) of them, else a number drawn uniformly
from ``1 .. max_negatives - 1``. Only the captions are added, never their boxes: the tokens of an
added caption are negatives for every box of the image. Each caption ends with a ``"."`` and they
are joined by a space, in shuffled order; the sample's phrase spans move with its caption.

The packed caption never exceeds the token window: the drawn captions are taken in their drawn
order and one that would not fit is left out (tokens counted with
`glip.prompts.count_prompt_tokens`, ``[CLS]``/``[SEP]`` included); a caption that alone fills the
window gets no company. The draw depends only on the ``random.Random`` given (the datasets derive
it from ``(seed, epoch, index, repeat)``), so a resumed run packs exactly as before.

Example:
    >>> packer = CaptionPacker(["a red star", "a blue ring", "two squares"], CaptionPacking(), 256)
    >>> packed = packer.pack(sample, index=0, rng=random.Random(0))  # doctest: +SKIP
    >>> packed.phrase_texts() == sample.phrase_texts()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from glip.data.sample import GroundingSample
from glip.prompts import count_prompt_tokens
from glip.tokenizer import load_tokenizer

SEPARATOR = " "  # between the captions, each ended by a "."


@dataclass(frozen=True)
class CaptionPacking:
    """How many other captions a read of a caption sample gets (official: 0.4 / 0.3 / rest, 20).

    Attributes:
        no_negatives_prob: probability of no added caption.
        all_negatives_prob: probability of ``max_negatives`` added captions; the remaining
            probability draws their number uniformly from ``1 .. max_negatives - 1``.
        max_negatives: the most captions added to one sample (before the window cuts them).
    """

    no_negatives_prob: float = 0.4
    all_negatives_prob: float = 0.3
    max_negatives: int = 20

    def __post_init__(self) -> None:
        for name in ("no_negatives_prob", "all_negatives_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"caption packing: {name} must be in [0, 1], got {value}")
        if self.no_negatives_prob + self.all_negatives_prob > 1.0 + 1e-9:
            raise ValueError(
                f"caption packing: no_negatives_prob + all_negatives_prob must be at most 1, got "
                f"{self.no_negatives_prob} + {self.all_negatives_prob}"
            )
        if not isinstance(self.max_negatives, int) or self.max_negatives < 1:
            raise ValueError(f"caption packing: max_negatives must be a positive integer, got {self.max_negatives!r}")

    def draw_count(self, rng: random.Random) -> int:
        """How many captions to add to one read."""
        draw = rng.random()
        if draw < self.no_negatives_prob:
            return 0
        if draw < self.no_negatives_prob + self.all_negatives_prob or self.max_negatives == 1:
            return self.max_negatives
        return rng.randint(1, self.max_negatives - 1)


def _sentence(caption: str) -> str:
    """A caption as it stands in a packed caption: ended by a ``"."``."""
    return caption if caption.endswith(".") else caption + "."


class CaptionPacker:
    """Packs other records' captions beside a sample's (see the module docstring).

    Args:
        captions: the caption of every record of the dataset, by index (the negatives' pool).
        packing: the draw of how many captions are added.
        max_tokens: the token window, ``[CLS]``/``[SEP]`` included.
        tokenizer: counts the tokens; defaults to `glip.tokenizer.load_tokenizer`.
    """

    def __init__(self, captions: Sequence[str], packing: CaptionPacking, max_tokens: int,
                 tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        if max_tokens < 3:
            raise ValueError(f"max_tokens must be at least 3 (two special tokens and one word), got {max_tokens}")
        self.captions = captions
        self.packing = packing
        self.max_tokens = max_tokens
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()

    def _cost(self, sentence: str) -> int:
        return count_prompt_tokens(sentence, self.tokenizer, special_tokens=False)

    def draw_negatives(self, index: int, rng: random.Random) -> list[str]:
        """The captions (ended by ``"."``) to add to record ``index``, in drawn order, all fitting."""
        count = min(self.packing.draw_count(rng), len(self.captions) - 1)
        if count <= 0:
            return []
        own = self.captions[index]
        budget = self.max_tokens - count_prompt_tokens(_sentence(own), self.tokenizer)
        chosen: list[str] = []
        for other in rng.sample(range(len(self.captions) - 1), count):
            caption = self.captions[other + (other >= index)]  # every record but ``index``
            if caption.strip().lower() == own.strip().lower():
                continue  # the same text is no negative
            sentence = _sentence(caption)
            cost = self._cost(sentence)
            if cost <= budget:
                chosen.append(sentence)
                budget -= cost
        return chosen

    def pack(self, sample: GroundingSample, index: int, rng: random.Random) -> GroundingSample:
        """``sample`` (record ``index``) with drawn captions packed beside its own, spans shifted.

        The sample itself is returned unchanged when no caption is added.
        """
        negatives = self.draw_negatives(index, rng)
        if not negatives:
            return sample
        parts = [_sentence(sample.caption)] + negatives
        order = list(range(len(parts)))
        rng.shuffle(order)
        caption = SEPARATOR.join(parts[i] for i in order)
        # Tokens were counted per caption; a tokenizer that merges across the separator could
        # count the whole differently: drop added captions until the whole fits.
        while count_prompt_tokens(caption, self.tokenizer) > self.max_tokens and len(order) > 1:
            order.remove(max(order))
            caption = SEPARATOR.join(parts[i] for i in order)
        offset = sum(len(parts[i]) + len(SEPARATOR) for i in order[:order.index(0)])
        phrase_spans = [[(start + offset, end + offset) for start, end in spans] for spans in sample.phrase_spans]
        return sample.replace(caption=caption, phrase_spans=phrase_spans)
