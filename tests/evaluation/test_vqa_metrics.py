"""VQA accuracy: the official leave-one-annotator-out rule, by hand, per type, and its errors."""

from __future__ import annotations

import json

import pytest

from glip.data.vqa import VqaQuestion
from glip.evaluation.common import EvaluationError
from glip.evaluation.vqa_metrics import question_accuracy, read_vqa_predictions, vqa_accuracy


@pytest.mark.parametrize("matching, accuracy", [
    # k of 10 annotators gave the answer: leaving out one of them (k times) leaves k - 1 matches,
    # leaving out another (10 - k times) leaves k; each subset scores min(matches / 3, 1).
    (0, 0.0),
    (1, (1 * 0 + 9 * (1 / 3)) / 10),  # 0.3
    (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),  # 0.6
    (3, (3 * (2 / 3) + 7 * 1) / 10),  # 0.9, not 1.0: a leave-out subset may keep only 2 matches
    (4, 1.0),
    (10, 1.0),
])
def test_ten_choose_nine_rule(matching, accuracy):
    answers = ["2"] * matching + ["3"] * (10 - matching)
    assert question_accuracy("2", answers) == pytest.approx(accuracy, abs=1e-12)
    assert [round(question_accuracy("2", ["2"] * k + ["3"] * (10 - k)), 12) for k in (1, 2, 3)] == [0.3, 0.6, 0.9]


def test_answers_are_compared_normalised():
    assert question_accuracy("Two.", ["2"] * 10) == 1.0
    assert question_accuracy("the Dog", ["dog"] * 5 + ["cat"] * 5) == 1.0
    assert question_accuracy("yes", ["no"] * 10) == 0.0
    # the official script normalises only when the annotators disagree
    assert question_accuracy("two", ["2"] * 10, always_normalize=False) == 0.0
    assert question_accuracy("Two", ["2"] * 9 + ["3"], always_normalize=False) == 1.0
    assert question_accuracy("red", ["red"]) == 1.0 and question_accuracy("blue", ["red"]) == 0.0


def question(question_id: int, answers: list[str], question_type: str, answer_type: str) -> VqaQuestion:
    return VqaQuestion(question_id, 1, "?", None, tuple(answers), answers[0], question_type, answer_type)


def test_overall_and_per_type():
    questions = [question(1, ["2"] * 10, "count", "number"), question(2, ["2"] * 2 + ["3"] * 8, "count", "number"),
                 question(3, ["yes"] * 10, "exist", "yes/no"), question(4, ["red"] * 10, "color", "other")]
    result = vqa_accuracy(questions, {1: "2", 2: "2", 3: "no", 4: "red"})
    assert result.per_question == pytest.approx({1: 1.0, 2: 0.6, 3: 0.0, 4: 1.0})
    assert result.overall == pytest.approx(2.6 / 4)
    assert result.per_question_type == pytest.approx({"color": 1.0, "count": 0.8, "exist": 0.0})
    assert result.per_answer_type == pytest.approx({"number": 0.8, "other": 1.0, "yes/no": 0.0})
    assert result.to_dict()["questions"] == 4


def test_missing_unknown_and_unanswerable_questions_are_errors():
    questions = [question(1, ["2"] * 10, "count", "number"), question(2, ["2"] * 10, "count", "number")]
    with pytest.raises(EvaluationError, match=r"1 record with a question without prediction \(2\); "
                                              r"1 record with a prediction of an unknown question \(9\)"):
        vqa_accuracy(questions, {1: "2", 9: "3"})
    test_split = [VqaQuestion(1, 1, "?", None)]
    with pytest.raises(EvaluationError, match="question without answers"):
        vqa_accuracy(test_split, {1: "2"})


def test_results_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"question_id": 1, "answer": "2"}, {"question_id": 2, "answer": "yes"}]))
    assert read_vqa_predictions(path) == {1: "2", 2: "yes"}
    path.write_text(json.dumps([{"question_id": 1, "answer": "2"}, {"question_id": 1, "answer": "3"},
                                {"question_id": 2}]))
    with pytest.raises(EvaluationError, match=r"results.json: 1 record with a duplicate question id \(1\); 1 record"):
        read_vqa_predictions(path)
    path.write_text('{"question_id": 1}')
    with pytest.raises(EvaluationError, match="not a VQA results file"):
        read_vqa_predictions(path)
