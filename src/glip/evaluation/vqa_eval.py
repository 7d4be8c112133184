"""VQA evaluation: a predictor's best answer to every question, scored with the VQA2.0 accuracy.

Questions are grouped by image so that each image is read and encoded once for all its questions,
and ``batch_size`` images with all their questions go through the model together
(`GLIPPredictor.answer_each`). The predictions are the official results format
(``[{"question_id", "answer"}]``) and the score `glip.evaluation.vqa_metrics.vqa_accuracy`
(overall, per question type, per answer type).

Example:
    >>> questions = read_vqa("questions.json", "annotations.json")  # doctest: +SKIP
    >>> predictions = predict_answers(predictor, questions)  # doctest: +SKIP
    >>> vqa_accuracy(questions, predictions).overall  # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

from tqdm.auto import tqdm

from glip.data.vqa import VqaQuestion
from glip.evaluation.common import EvaluationError
from glip.predictor import GLIPPredictor

Id = Union[int, str]


def predict_answers(predictor: GLIPPredictor, questions: Sequence[VqaQuestion],
                    progress: bool = False, batch_size: int = 8) -> dict[Id, str]:
    """Question id -> the predictor's best answer, for every question (each must name its image)."""
    by_image: dict[Path, list[VqaQuestion]] = defaultdict(list)
    for question in questions:
        if question.image is None:
            raise EvaluationError(f"question {question.question_id!r} names no image file: give the questions "
                                  "file's 'images' list or --image-pattern")
        by_image[question.image].append(question)
    images = list(by_image)
    predictions: dict[Id, str] = {}
    with tqdm(total=len(images), desc="vqa", unit="image", disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            asked = [by_image[image] for image in chunk]
            results = predictor.answer_each(chunk, [[q.question for q in own] for own in asked], top_k=1,
                                            batch_size=len(chunk))
            for own, result in zip(asked, results):
                for question, qa in zip(own, result.qa):
                    predictions[question.question_id] = qa.answers[0].answer
            bar.update(len(chunk))
    return predictions


def results_records(predictions: Mapping[Id, str]) -> list[dict]:
    """The official results format: ``[{"question_id", "answer"}, ...]``."""
    return [{"question_id": question_id, "answer": answer} for question_id, answer in predictions.items()]
