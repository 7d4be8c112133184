"""Question answering with GLIP's fused encoder: images and questions in, scored answers out.

The question is the text input of the fused encoder (`GLIP.fused_features`); the answer head
(`glip.modeling.vqa_head.VqaHead`) scores every answer of its vocabulary from the fused features,
``sigmoid(logit)`` (the head is trained with a binary cross-entropy on soft scores). The image side
runs once per batch of images; the text side and the fusion run on batches of (image, question)
pairs, each image asked the same questions (`QuestionAnswerer.answer`) or its own
(`QuestionAnswerer.answer_each`).

Example:
    >>> answerer = QuestionAnswerer(model, head, vocabulary, tokenizer)  # doctest: +SKIP
    >>> answerer.answer(batch, ["how many stars are there?"], top_k=3)[0][0]  # doctest: +SKIP
    [Answer(answer='2', score=0.91), Answer(answer='3', score=0.05), Answer(answer='1', score=0.02)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from glip.data.vqa_answers import AnswerVocabulary
from glip.engine import DetectionCancelled
from glip.images import ImageBatch
from glip.modeling.glip import GLIP
from glip.modeling.vqa_head import VqaHead


@dataclass
class Answer:
    answer: str
    score: float  # sigmoid of the head's logit, in [0, 1]


@dataclass
class QuestionAnswers:
    question: str
    answers: list[Answer]  # best first


@dataclass
class ImageAnswers:
    """Every question asked of one image, each with its best answers."""

    image: str | None
    width: int
    height: int
    qa: list[QuestionAnswers] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TokenizedQuestions:
    """input_ids, attention_mask: [Q, L], padded to the longest question (L <= the model's window)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def check_questions(questions: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> list[str]:
    """The questions stripped, after checking that each is a non-empty string that fits the window.

    Raises:
        ValueError: no question, an empty one, or one longer than ``max_length`` tokens (with
            [CLS] and [SEP]); the message names it.
    """
    if isinstance(questions, str):
        raise ValueError("questions must be a list of strings, not one string: questions=['what colour is it?']")
    if not questions:
        raise ValueError("no question given: ask at least one, e.g. 'how many stars are there?'")
    checked = []
    for index, question in enumerate(questions):
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question {index + 1} is empty: ask something, e.g. 'what colour is the star?'")
        tokens = len(tokenizer(question.strip())["input_ids"])
        if tokens > max_length:
            raise ValueError(f"question {index + 1} is {tokens} tokens, more than the model's text window of "
                             f"{max_length} tokens: shorten it ({question[:60]!r}...)")
        checked.append(question.strip())
    return checked


def tokenize_questions(questions: Sequence[str], tokenizer: PreTrainedTokenizerBase,
                       max_length: int) -> TokenizedQuestions:
    """Checked questions (`check_questions`) as token ids padded to the longest of them."""
    encoding = tokenizer(list(check_questions(questions, tokenizer, max_length)), padding="longest",
                         max_length=max_length, truncation=True, return_tensors="pt")
    return TokenizedQuestions(encoding["input_ids"], encoding["attention_mask"])


class QuestionAnswerer:
    """Runs a `GLIP` model and its answer head over image batches and questions.

    Args:
        model: the fused encoder, on its device, in eval mode.
        head: the answer head (same device).
        vocabulary: the head's answers, index order.
        tokenizer: the model's tokenizer.
        questions_per_pass: (image, question) pairs the text side and the fusion run at once.
    """

    def __init__(self, model: GLIP, head: VqaHead, vocabulary: AnswerVocabulary,
                 tokenizer: PreTrainedTokenizerBase, questions_per_pass: int = 16) -> None:
        if len(vocabulary) != head.num_answers:
            raise ValueError(f"answer vocabulary mismatch: {len(vocabulary)} answers for a head scoring "
                             f"{head.num_answers}")
        if questions_per_pass < 1:
            raise ValueError(f"questions_per_pass must be at least 1, got {questions_per_pass}")
        self.model, self.head, self.vocabulary, self.tokenizer = model, head, vocabulary, tokenizer
        self.questions_per_pass = questions_per_pass

    @property
    def max_length(self) -> int:
        return self.model.config.text.max_length

    @torch.inference_mode()
    def pair_scores(self, batch: ImageBatch, image_rows: Sequence[int], questions: Sequence[str],
                    cancelled: Callable[[], bool] | None = None) -> torch.Tensor:
        """[N, num_answers] answer scores of N (image, question) pairs: ``questions[n]`` asked of
        image ``image_rows[n]`` of ``batch``. The image side runs once per image; the text side and
        the fusion run on ``questions_per_pass`` pairs at a time, each question padded to the
        longest of its pass (padding changes no score: the attention masks leave it out)."""
        if len(image_rows) != len(questions):
            raise ValueError(f"{len(image_rows)} image rows for {len(questions)} questions: give one row per question")
        tokens = tokenize_questions(questions, self.tokenizer, self.max_length)  # [N, L]
        device = batch.tensor.device
        image_features = self.model.encode_images(batch.tensor)
        rows = torch.as_tensor(list(image_rows), dtype=torch.int64)
        scores = []
        for start in range(0, rows.shape[0], self.questions_per_pass):
            if cancelled is not None and cancelled():
                raise DetectionCancelled("question answering cancelled")
            ids = tokens.input_ids[start:start + self.questions_per_pass]
            mask = tokens.attention_mask[start:start + self.questions_per_pass]
            real = int(mask.sum(dim=1).max())  # the pass's longest question
            fused = self.model.fused_features(batch.tensor, ids[:, :real].to(device), mask[:, :real].to(device),
                                              image_features=image_features.select(rows[start:start + ids.shape[0]],
                                                                                  stages=False))
            logits = self.head(fused.text, fused.text_mask, fused.visual, fused.image.levels).logits  # [n, A]
            scores.append(logits.float().sigmoid())
        return torch.cat(scores)

    def answer_each(self, batch: ImageBatch, questions: Sequence[Sequence[str]], top_k: int = 5,
                    cancelled: Callable[[], bool] | None = None) -> list[list[QuestionAnswers]]:
        """Per image of ``batch``, its own questions (``questions[b]``), each with the ``top_k`` best
        answers (best first)."""
        _check_top_k(top_k)
        if len(questions) != batch.tensor.shape[0]:
            raise ValueError(f"{len(questions)} question lists for {batch.tensor.shape[0]} images: give one per image")
        asked = [check_questions(own, self.tokenizer, self.max_length) for own in questions]
        rows = [row for row, own in enumerate(asked) for _ in own]
        scores = self.pair_scores(batch, rows, [question for own in asked for question in own], cancelled)
        values, indices = scores.topk(min(top_k, len(self.vocabulary)), dim=-1)  # [N, K]
        answers = self.vocabulary.answers
        results, pair = [], 0
        for own in asked:
            results.append([QuestionAnswers(question, [Answer(answers[i], round(float(v), 4))
                                                       for v, i in zip(values[pair + q].tolist(),
                                                                       indices[pair + q].tolist())])
                            for q, question in enumerate(own)])
            pair += len(own)
        return results

    def answer(self, batch: ImageBatch, questions: Sequence[str], top_k: int = 5,
               cancelled: Callable[[], bool] | None = None) -> list[list[QuestionAnswers]]:
        """Per image of ``batch``, per question, the ``top_k`` best answers (best first)."""
        return self.answer_each(batch, [questions] * batch.tensor.shape[0], top_k, cancelled)


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a whole number of at least 1, got {top_k!r}")
