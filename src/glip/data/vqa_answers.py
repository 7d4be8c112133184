"""VQA answers: the official VQA2.0 normalisation, and the answer vocabulary of a classifier head.

`normalize_answer` is the official evaluation's ``processPunctuation`` then ``processDigitArticle``
(``vqaEval.py`` of the VQA2.0 API), quirks included, so that an answer scores here as it would
there:

- punctuation (`PUNCTUATION`) is deleted where it touches a space, or anywhere when the text holds
  a digit-comma-digit ("1,000"), and otherwise replaced by a space ("yes/no" -> "yes no"); a
  period is deleted unless a digit follows it ("3.5" stays);
- the words are lower-cased, number words zero to ten (and "none") become digits, the articles
  "a", "an", "the" are dropped, and apostrophe-less contractions get their apostrophe ("dont" ->
  "don't").

`AnswerVocabulary` is the answer set of a VQA classifier (GLIPv2, like most VQA models, classifies
over the frequent training answers): answers seen at least ``min_count`` times, each question's
target a soft score per answer, ``min(annotators giving it / 3, 1)``.

Example:
    >>> normalize_answer("Two dogs.")
    '2 dogs'
    >>> normalize_answer("Yes/No")
    'yes no'
    >>> vocabulary = AnswerVocabulary.build([["2"] * 10, ["2"] * 9 + ["3"], ["yes"] * 10], min_count=2)
    >>> vocabulary.answers, vocabulary.soft_scores(["2"] * 9 + ["3"])
    (('2',), {'2': 1.0})
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# The official evaluation's tables, verbatim (``vqaEval.py``: contractions, manualMap, articles, punct).
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES: tuple[str, ...] = ("a", "an", "the")
PUNCTUATION: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                                "@", "`", ",", "?", "!")
# Official quirk: "(?!<=\d)" is a negative *lookahead* for the text "<=" and a digit, not the
# lookbehind it looks like, so a period is kept only when a digit follows it.
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# Official quirk: ``periodStrip.sub("", text, re.UNICODE)`` passes re.UNICODE (32) as the count.
_PERIOD_COUNT = int(re.UNICODE)
SOFT_SCORE_ANNOTATORS = 3  # an answer given by this many annotators is fully right (VQA accuracy's rule)


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: see the module docstring."""
    out = text
    for mark in PUNCTUATION:
        if mark + " " in text or " " + mark in text or _DIGIT_COMMA_DIGIT.search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, _PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words to digits, no articles, contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(answer: str) -> str:
    """An answer as the official VQA2.0 evaluation compares it (newlines and tabs are spaces first)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def soft_scores(answers: Sequence[str]) -> dict[str, float]:
    """Each distinct normalised answer of one question's annotators: ``min(count / 3, 1)``."""
    counts = Counter(normalize_answer(answer) for answer in answers)
    return {answer: min(count / SOFT_SCORE_ANNOTATORS, 1.0) for answer, count in counts.items()}


@dataclass(frozen=True)
class AnswerVocabulary:
    """The answers a VQA classifier chooses from, most frequent first.

    Attributes:
        answers: normalised answers, by decreasing count (ties alphabetical), so index 0 is the
            most common answer.
        counts: how many training questions have each answer as their most common one.
    """

    answers: tuple[str, ...]
    counts: tuple[int, ...]
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.answers) != len(self.counts) or len(set(self.answers)) != len(self.answers):
            raise ValueError("an answer vocabulary needs distinct answers, one count each")
        object.__setattr__(self, "_positions", {answer: i for i, answer in enumerate(self.answers)})

    @classmethod
    def build(cls, questions_answers: Iterable[Sequence[str]], min_count: int = 9) -> AnswerVocabulary:
        """The normalised answers that are the most common answer of at least ``min_count`` questions.

        Args:
            questions_answers: per training question, its annotators' answers (10 in VQA2.0).
            min_count: the fewest questions an answer must be the most common answer of
                (9 in the bottom-up attention recipe that most VQA heads follow).

        The most common answer of a question is its normalised answer given by most annotators
        (ties: the first given), the ``multiple_choice_answer`` of VQA2.0.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        counts: Counter[str] = Counter()
        for answers in questions_answers:
            if answers:
                counts[most_common_answer(answers)] += 1
        kept = sorted(((answer, count) for answer, count in counts.items() if count >= min_count),
                      key=lambda item: (-item[1], item[0]))
        if not kept:
            raise ValueError(f"no answer is the most common answer of {min_count} or more questions; "
                             f"lower min_count (the most frequent answer has {max(counts.values(), default=0)})")
        return cls(tuple(answer for answer, _ in kept), tuple(count for _, count in kept))

    def __len__(self) -> int:
        return len(self.answers)

    def index(self, answer: str) -> int | None:
        """The class index of ``answer`` (normalised first), or None when it is not in the vocabulary."""
        return self._positions.get(normalize_answer(answer))

    def soft_scores(self, answers: Sequence[str]) -> dict[str, float]:
        """The soft target of one question: `soft_scores` restricted to the vocabulary's answers."""
        return {answer: score for answer, score in soft_scores(answers).items() if answer in self._positions}

    def target(self, answers: Sequence[str]) -> list[float]:
        """The soft target as a dense list of ``len(self)`` scores (index order), for a BCE loss."""
        dense = [0.0] * len(self.answers)
        for answer, score in self.soft_scores(answers).items():
            dense[self._positions[answer]] = score
        return dense


def most_common_answer(answers: Sequence[str]) -> str:
    """The normalised answer most annotators gave (ties: the one given first)."""
    counts = Counter(normalize_answer(answer) for answer in answers)
    return max(counts, key=counts.__getitem__)  # Counter keeps first-seen order; max keeps the first of ties
