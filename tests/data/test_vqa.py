"""VQA data: the official answer normalisation, the answer vocabulary, and the two file forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glip.data.validation import DataError
from glip.data.vqa import read_vqa
from glip.data.vqa_answers import AnswerVocabulary, most_common_answer, normalize_answer, soft_scores


@pytest.mark.parametrize("answer, normal", [
    # manualMap: number words (and "none") become digits
    ("none", "0"), ("zero", "0"), ("Two", "2"), ("ten", "10"), ("eleven", "eleven"),
    # articles go
    ("the dog", "dog"), ("An apple", "apple"), ("a man's hat", "man's hat"),
    # contractions get their apostrophe; the capitalised keys ("Im") never match after lower-casing
    ("dont", "don't"), ("Isnt", "isn't"), ("youre", "you're"), ("Im", "im"),
    # punctuation: deleted next to a space or in a digit,digit text, else a space
    ("yes/no", "yes no"), ("hot-dog", "hot dog"), ("hot - dog", "hot dog"), ("(left)", "left"),
    ("no, thanks", "no thanks"), ("1,000", "1000"), ("what?", "what"),
    # a period goes unless a digit follows it
    ("yes.", "yes"), ("3.5", "3.5"), ("3.", "3"), ("Mr. T.", "mr t"),
    # whitespace
    ("  Ten\tdogs\n", "10 dogs"),
])
def test_normalisation_as_the_official_evaluation(answer, normal):
    assert normalize_answer(answer) == normal


def test_soft_scores_and_most_common_answer():
    assert soft_scores(["two"] * 2 + ["2"] * 2 + ["3"] * 2 + ["four"]) == {"2": 1.0, "3": 2 / 3, "4": 1 / 3}
    assert most_common_answer(["red", "Blue", "blue", "red"]) == "red"  # a tie: the first given


def test_answer_vocabulary():
    questions = [["2"] * 10, ["two"] * 6 + ["3"] * 4, ["yes"] * 10, ["yes"] * 9 + ["no"], ["no"] * 10, ["red"] * 10]
    vocabulary = AnswerVocabulary.build(questions, min_count=2)
    assert vocabulary.answers == ("2", "yes") and vocabulary.counts == (2, 2) and len(vocabulary) == 2
    assert vocabulary.index("Two") == 0 and vocabulary.index("red") is None
    assert vocabulary.soft_scores(["two"] * 2 + ["3"] * 8) == {"2": 2 / 3}  # "3" is not in the vocabulary
    assert vocabulary.target(["yes"] * 9 + ["2"]) == [1 / 3, 1.0]
    assert AnswerVocabulary.build(questions, min_count=1).answers == ("2", "yes", "no", "red")
    with pytest.raises(ValueError, match="lower min_count"):
        AnswerVocabulary.build(questions, min_count=3)


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def vqa_files(tmp_path: Path, annotation_changes: dict | None = None, question_changes: dict | None = None):
    question = {"image_id": 42, "question": "how many dogs?", "question_id": 420} | (question_changes or {})
    annotation = {"question_id": 420, "image_id": 42, "question_type": "how many", "answer_type": "number",
                  "answers": [{"answer": "2", "answer_id": k} for k in range(1, 11)],
                  "multiple_choice_answer": "2"} | (annotation_changes or {})
    questions = write_json(tmp_path / "q.json", {"data_subtype": "val2014", "questions": [question]})
    return questions, write_json(tmp_path / "a.json", {"annotations": [annotation]})


def test_vqa2_json(tmp_path):
    questions, annotations = vqa_files(tmp_path)
    [question] = read_vqa(questions, annotations, image_dir=tmp_path / "val2014")
    assert question.image == tmp_path / "val2014" / "COCO_val2014_000000000042.jpg"
    assert question.answers == ("2",) * 10 and question.multiple_choice_answer == "2"
    assert (question.question_type, question.answer_type) == ("how many", "number")
    [test_question] = read_vqa(questions)  # a test split: no annotations
    assert test_question.answers is None and test_question.question == "how many dogs?"


@pytest.mark.parametrize("annotation, message", [
    ({"answers": []}, "a.json#annotation 0: 'answers' is not a non-empty list"),
    ({"answers": [{"answer_id": 1}]}, "a.json#annotation 0: answer None is not a non-empty string"),
    ({"question_id": None}, "a.json#annotation 0: question_id None is missing"),
])
def test_vqa2_malformed_annotations_name_file_and_record(tmp_path, annotation, message):
    questions, annotations = vqa_files(tmp_path, annotation)
    with pytest.raises(DataError) as info:
        read_vqa(questions, annotations)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_vqa2_question_faults(tmp_path):
    questions, annotations = vqa_files(tmp_path, {"image_id": 7})
    with pytest.raises(DataError, match=r"q.json#question 0: question 420 is about image 42 but its annotation"):
        read_vqa(questions, annotations)
    questions, annotations = vqa_files(tmp_path, {"question_id": 1})
    with pytest.raises(DataError, match=r"q.json#question 0: question 420 has no annotation"):
        read_vqa(questions, annotations)
    with pytest.raises(DataError, match=r"q.json: 1 record with a question without annotation .*; "
                                        r"1 record with an annotation without question \('.*a.json#question 1: "):
        read_vqa(questions, annotations, on_error="raise_all")
    questions, _ = vqa_files(tmp_path, question_changes={"question": ""})
    with pytest.raises(DataError, match=r"q.json#question 0: 'question' '' is not a non-empty string"):
        read_vqa(questions)
    (tmp_path / "bad.json").write_text('{"questions": 3}')
    with pytest.raises(DataError, match="not a VQA questions file"):
        read_vqa(tmp_path / "bad.json")


def test_jsonl_form_and_the_skip_policy(tmp_path, caplog):
    path = tmp_path / "vqa.jsonl"
    good = {"image": "images/1.png", "question": "is there a star?", "answers": ["yes"] * 3, "question_type": "exist"}
    lines = [good, {"image": "images/1.png", "question": "what?", "answers": "yes"}, good | {"question_id": 7}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n")
    with pytest.raises(DataError, match=r"vqa.jsonl:2: 'answers' is not a non-empty list"):
        read_vqa(path)
    questions = read_vqa(path, on_error="skip")
    assert [q.question_id for q in questions] == [1, 7]  # line number unless given
    assert questions[0].image == tmp_path / "images/1.png" and questions[0].image_id == "images/1.png"
    assert "vqa.jsonl:4: invalid JSON" in caplog.text
    with pytest.raises(ValueError, match="records hold their answers"):
        read_vqa(path, tmp_path / "a.json")
    with pytest.raises(DataError, match=r"vqa.jsonl: 1 record with a bad answers .*; 1 record with an invalid JSON"):
        read_vqa(path, on_error="raise_all")
