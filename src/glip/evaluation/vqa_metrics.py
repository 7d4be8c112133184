"""VQA accuracy, as the official VQA2.0 evaluation computes it.

For one question with annotator answers ``a_1 .. a_n`` (n = 10 in VQA2.0) and a predicted answer
``p``, each annotator is left out in turn and ``p`` scores ``min(#(other annotators who said p) /
3, 1)``; the question's accuracy is the mean over the ``n`` leave-one-out subsets (the "10 choose
9" rule). So 4 or more matching annotators give 1.0, 3 give 0.9, 2 give 0.6, 1 gives 0.3.
Answers are compared after `glip.data.vqa_answers.normalize_answer` (and case-insensitively, as
the official script does).

One difference from the official script, on purpose: it normalises only when the annotators
disagree (a quirk: "two" then scores 0 against ten annotators saying "2"); here both sides are
always normalised. ``always_normalize=False`` reproduces the script exactly.

Accuracies are fractions in [0, 1] (the official script prints percentages rounded to 2 digits).
A question with a single answer (no subset to leave it out of) scores 1.0 on a match.

Predictions are the official results format: ``[{"question_id", "answer"}, ...]``, one per
question; a missing, duplicate or unknown question is an `EvaluationError` naming them.

Example:
    >>> from glip.data.vqa import VqaQuestion
    >>> question = VqaQuestion(1, 7, "how many stars are there?", None, ("2",) * 2 + ("3",) * 8,
    ...                        "3", "count", "number")
    >>> vqa_accuracy([question], {1: "two"}).overall
    0.6
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from glip.data.vqa import VqaQuestion
from glip.data.vqa_answers import normalize_answer
from glip.evaluation.common import EvaluationError, fault_collector, is_id, read_json

Id = Union[int, str]
MATCHES_FOR_FULL_CREDIT = 3


@dataclass
class VqaAccuracy:
    """VQA accuracy of a set of predictions, fractions in [0, 1].

    Attributes:
        overall: mean over every question.
        per_question_type: mean over the questions of each ``question_type`` (None grouped as "").
        per_answer_type: mean over the questions of each ``answer_type`` ("yes/no", "number", "other").
        per_question: each question's accuracy, by question id.
    """

    overall: float
    per_question_type: dict[str, float] = field(default_factory=dict)
    per_answer_type: dict[str, float] = field(default_factory=dict)
    per_question: dict[Id, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The aggregate figures (not the per-question ones) as plain JSON values."""
        return {"overall": self.overall, "per_question_type": dict(self.per_question_type),
                "per_answer_type": dict(self.per_answer_type), "questions": len(self.per_question)}


def question_accuracy(prediction: str, answers: Sequence[str], always_normalize: bool = True) -> float:
    """The official accuracy of ``prediction`` against one question's annotator ``answers``.

    Args:
        prediction: the predicted answer.
        answers: the annotators' answers (10 in VQA2.0).
        always_normalize: normalise even when the annotators agree (False: the official script's
            quirk, see the module docstring).

    Example:
        >>> question_accuracy("2", ["2", "2", "2"] + ["3"] * 7)
        0.9
    """
    if not answers:
        raise ValueError("a question needs at least one annotator answer")
    truth = [answer.replace("\n", " ").replace("\t", " ").strip() for answer in answers]
    predicted = prediction.replace("\n", " ").replace("\t", " ").strip()
    if always_normalize or len(set(truth)) > 1:
        truth = [normalize_answer(answer) for answer in truth]
        predicted = normalize_answer(predicted)
    matches = [answer.lower() == predicted.lower() for answer in truth]
    if len(matches) == 1:
        return float(matches[0])
    total = sum(matches)
    # Leaving out annotator i removes its own match, if it was one.
    scores = [min(1.0, (total - match) / MATCHES_FOR_FULL_CREDIT) for match in matches]
    return sum(scores) / len(scores)


def vqa_accuracy(questions: Sequence[VqaQuestion], predictions: Mapping[Id, str],
                 always_normalize: bool = True) -> VqaAccuracy:
    """Overall, per question type and per answer type accuracy of ``predictions`` (question id -> answer).

    Every question must have answers and a prediction; a prediction of an unknown question is an
    error too (it would mean scoring against the wrong split).
    """
    faults = fault_collector("VQA predictions")
    known = {question.question_id for question in questions}
    for question in questions:
        if question.answers is None:
            faults.add("question without answers", question.question_id,
                       "give the annotations file: test questions cannot be scored")
        elif question.question_id not in predictions:
            faults.add("question without prediction", question.question_id)
    for question_id in predictions:
        if question_id not in known:
            faults.add("prediction of an unknown question", question_id)
    faults.raise_if_any()
    if not questions:
        raise EvaluationError("no questions to score")
    per_question: dict[Id, float] = {}
    by_question_type: dict[str, list[float]] = defaultdict(list)
    by_answer_type: dict[str, list[float]] = defaultdict(list)
    for question in questions:
        accuracy = question_accuracy(predictions[question.question_id], question.answers or (), always_normalize)
        per_question[question.question_id] = accuracy
        by_question_type[question.question_type or ""].append(accuracy)
        by_answer_type[question.answer_type or ""].append(accuracy)
    return VqaAccuracy(
        overall=sum(per_question.values()) / len(per_question),
        per_question_type={name: sum(values) / len(values) for name, values in sorted(by_question_type.items())},
        per_answer_type={name: sum(values) / len(values) for name, values in sorted(by_answer_type.items())},
        per_question=per_question,
    )


def read_vqa_predictions(path: str | Path) -> dict[Id, str]:
    """Question id -> answer from an official results file ``[{"question_id", "answer"}, ...]``."""
    data = read_json(path, "VQA results file")
    faults = fault_collector(str(path))
    if not isinstance(data, list):
        faults.fail('not a VQA results file (a list of {"question_id", "answer"} objects)')
    predictions: dict[Id, str] = {}
    for index, record in enumerate(data):
        if not isinstance(record, dict) or not is_id(record.get("question_id")) \
                or not isinstance(record.get("answer"), str):
            faults.add('record that is not a {"question_id", "answer": str} object', index)
        elif record["question_id"] in predictions:
            faults.add("duplicate question id", record["question_id"])
        else:
            predictions[record["question_id"]] = record["answer"]
    faults.raise_if_any()
    return predictions
