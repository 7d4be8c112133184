"""VQA training samples: each question with its image and its soft-score target, and their batches.

`VqaTrainingSet` holds `glip.data.vqa.VqaQuestion`s that have answers and an image file; item i
is question i with its target over an `AnswerVocabulary` (``min(#annotators / 3, 1)`` per answer
in the vocabulary). `VqaCollator` loads and preprocesses the images at the model's input size
(``glip.images.prepare_images``: no flip nor multi-scale, since a flip would swap "left" and
"right" in questions and answers) and tokenises the questions, padded to the longest.

Example:
    >>> dataset = VqaTrainingSet(questions, vocabulary)  # doctest: +SKIP
    >>> collator = VqaCollator(tokenizer, 64, input_config)  # doctest: +SKIP
    >>> loader = DataLoader(dataset, batch_size=8, collate_fn=collator)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from glip.data.validation import DataError
from glip.data.vqa import VqaQuestion
from glip.data.vqa_answers import AnswerVocabulary
from glip.images import PreprocessConfig, prepare_images


@dataclass
class VqaSample:
    """One training question: its image file, text, target [num_answers] and id (for error messages)."""

    image: Path
    question: str
    target: torch.Tensor
    question_id: object


@dataclass
class VqaBatch:
    """A batch of questions, one image each.

    Attributes:
        images: [B, 3, H_pad, W_pad] normalised BGR, zero-padded to the size divisibility.
        input_ids, attention_mask: [B, L] the questions, padded to the longest.
        targets: [B, num_answers] soft scores in [0, 1].
        question_ids: the questions' ids, in batch order.
    """

    images: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    question_ids: list

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "VqaBatch":
        return VqaBatch(self.images.to(device, non_blocking=non_blocking),
                        self.input_ids.to(device, non_blocking=non_blocking),
                        self.attention_mask.to(device, non_blocking=non_blocking),
                        self.targets.to(device, non_blocking=non_blocking), list(self.question_ids))

    def describe(self) -> str:
        return "; ".join(f"question {question_id!r}" for question_id in self.question_ids)


class VqaTrainingSet(Dataset):
    """Questions with answers and an image file, each with its soft target over ``vocabulary``.

    Raises:
        DataError: a question without answers (a test split) or without an image file name.
    """

    def __init__(self, questions: Sequence[VqaQuestion], vocabulary: AnswerVocabulary) -> None:
        for question in questions:
            if question.answers is None:
                raise DataError(f"question {question.question_id!r} has no answers: training needs the "
                                "annotations file (or answers in each JSON Lines record)", "question without answers")
            if question.image is None:
                raise DataError(f"question {question.question_id!r} names no image file: give the questions file's "
                                "'images' list or an image pattern", "question without image")
        self.questions = list(questions)
        self.vocabulary = vocabulary

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> VqaSample:
        question = self.questions[index]
        target = torch.tensor(self.vocabulary.target(question.answers), dtype=torch.float32)  # [A]
        return VqaSample(question.image, question.question, target, question.question_id)


class VqaCollator:
    """VqaSamples -> a `VqaBatch` (see the module docstring).

    Args:
        tokenizer: the model's tokenizer.
        max_length: the model's token window; a longer question is a DataError naming it.
        input_config: the model's input preprocessing (sizes, normalisation, size divisibility).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, input_config: PreprocessConfig) -> None:
        self.tokenizer, self.max_length, self.input_config = tokenizer, max_length, input_config

    def __call__(self, samples: Sequence[VqaSample]) -> VqaBatch:
        images = prepare_images([sample.image for sample in samples], self.input_config)
        encoding = self.tokenizer([sample.question for sample in samples], padding="longest",
                                  truncation=False, return_tensors="pt")
        if encoding["input_ids"].shape[1] > self.max_length:
            lengths = encoding["attention_mask"].sum(dim=1).tolist()
            long = [str(s.question_id) for s, n in zip(samples, lengths) if n > self.max_length]
            raise DataError(f"question(s) {', '.join(long)} longer than the model's text window of {self.max_length} "
                            "tokens: shorten or drop them", "question too long")
        return VqaBatch(images.tensor, encoding["input_ids"], encoding["attention_mask"],
                        torch.stack([sample.target for sample in samples]), [s.question_id for s in samples])
