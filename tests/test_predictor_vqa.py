"""``GLIPPredictor.answer`` and VQA head files: answers best first, the head found beside the model,
and one-line errors for a model without a head, bad questions and mismatched head files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glip.vqa_head_files import VqaHeadError, head_path_for, load_vqa_head
from vqa_model import ANSWERS, save_vqa_glip


@pytest.fixture(scope="module")
def vqa_checkpoint(tmp_path_factory):
    return save_vqa_glip(tmp_path_factory.mktemp("vqa") / "glip-tiny.safetensors")


@pytest.fixture(scope="module")
def predictor(vqa_checkpoint):
    import dataclasses

    from glip.predictor import GLIPPredictor

    predictor = GLIPPredictor.from_pretrained(vqa_checkpoint, device="cpu")
    predictor.model.config.input = dataclasses.replace(predictor.model.config.input, min_size=64, max_size=64)
    return predictor


def _picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_every_question_of_every_image_gets_its_best_answers(predictor):
    questions = ["how many stars are there?", "is there a red square?"]
    results = predictor.answer([_picture(0), _picture(1)], questions, top_k=3, batch_size=2)
    assert len(results) == 2 and (results[0].width, results[0].height) == (64, 48)
    for result in results:
        assert [qa.question for qa in result.qa] == questions
        for qa in result.qa:
            scores = [a.score for a in qa.answers]
            assert len(scores) == 3 and scores == sorted(scores, reverse=True)
            assert all(0.0 <= s <= 1.0 for s in scores) and {a.answer for a in qa.answers} <= set(ANSWERS)
    alone = predictor.answer(_picture(1), questions[1:], top_k=3)[0]
    assert [a.answer for a in alone.qa[0].answers] == [a.answer for a in results[1].qa[1].answers]
    assert abs(alone.qa[0].answers[0].score - results[1].qa[1].answers[0].score) < 1e-4
    data = results[0].to_dict()
    assert set(data) == {"image", "width", "height", "qa"} and set(data["qa"][0]) == {"question", "answers"}
    assert len(predictor.answer(_picture(0), ["is it?"], top_k=50)[0].qa[0].answers) == len(ANSWERS)


def test_each_image_with_its_own_questions_equals_asking_one_question_at_a_time(predictor):
    # Questions of different lengths share passes (padded to the longest), split over passes of 2.
    own = [["how many stars are there?", "is there a red square?", "what colour is the big ring left of it?"],
           ["is it?"], ["what shape is it?", "how many?"]]
    pictures = [_picture(seed) for seed in range(3)]
    previous = predictor.answerer.questions_per_pass
    predictor.answerer.questions_per_pass = 2
    try:
        together = predictor.answer_each(pictures, own, top_k=2, batch_size=3)
    finally:
        predictor.answerer.questions_per_pass = previous
    assert [[qa.question for qa in result.qa] for result in together] == own
    for picture, questions, result in zip(pictures, own, together):
        for question, qa in zip(questions, result.qa):
            alone = predictor.answer(picture, [question], top_k=2)[0].qa[0]
            assert [a.answer for a in alone.answers] == [a.answer for a in qa.answers]
            assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(alone.answers, qa.answers))
    with pytest.raises(ValueError, match="2 question lists for 3 images"):
        predictor.answer_each(pictures, own[:2])


def test_bad_questions_are_clear_errors(predictor):
    with pytest.raises(ValueError, match="question 2 is empty"):
        predictor.answer(_picture(0), ["is it red?", "  "])
    with pytest.raises(ValueError, match="no question given"):
        predictor.answer(_picture(0), [])
    with pytest.raises(ValueError, match="not one string"):
        predictor.answer(_picture(0), "is it red?")
    with pytest.raises(ValueError, match=r"more than the model's text window of 256 tokens"):
        predictor.answer(_picture(0), ["is it " + "very " * 300 + "red?"])
    with pytest.raises(ValueError, match="top_k"):
        predictor.answer(_picture(0), ["is it red?"], top_k=0)


def test_a_model_without_a_head_says_how_to_get_one(tiny_checkpoint):
    from glip.predictor import GLIPPredictor

    predictor = GLIPPredictor.from_pretrained(tiny_checkpoint, device="cpu")
    assert predictor.answerer is None
    with pytest.raises(ValueError, match="no VQA answer head: fine-tune one with `glip vqa-train"):
        predictor.answer(_picture(0), ["is it red?"])


def test_head_files_are_checked_against_their_vocabulary_and_model(vqa_checkpoint, tiny_checkpoint, tmp_path):
    from glip.checkpoint import load_glip

    model = load_glip(vqa_checkpoint)
    head, vocabulary = load_vqa_head(head_path_for(vqa_checkpoint), model)
    assert vocabulary.answers == ANSWERS and head.num_answers == len(ANSWERS)
    copy = tmp_path / "m.vqa.safetensors"
    shutil.copy(head_path_for(vqa_checkpoint), copy)
    record = json.loads(head_path_for(vqa_checkpoint).with_suffix(".json").read_text())
    record["answers"], record["counts"] = record["answers"][:-1], record["counts"][:-1]
    copy.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(VqaHeadError, match="answer vocabulary mismatch: m.vqa.json lists 4 answers"):
        load_vqa_head(copy, model)
    copy.with_suffix(".json").unlink()
    with pytest.raises(VqaHeadError, match="has no answer vocabulary beside it"):
        load_vqa_head(copy, model)
    other = load_glip(tiny_checkpoint)  # same widths, other weights (its alignment bias is 0)
    with pytest.raises(VqaHeadError, match="was trained on another model"):
        load_vqa_head(head_path_for(vqa_checkpoint), other)
    assert load_vqa_head(head_path_for(vqa_checkpoint), other, check_base=False)[1] == vocabulary
