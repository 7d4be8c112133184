"""VQA training samples and batches: soft targets over the vocabulary, images at the model's size."""

from __future__ import annotations

import pytest

from glip.data.validation import DataError
from glip.data.vqa import VqaQuestion, read_vqa
from glip.data.vqa_answers import AnswerVocabulary
from glip.data.vqa_training import VqaCollator, VqaTrainingSet
from glip.images import PreprocessConfig
from glip.tokenizer import load_tokenizer
from vqa_data import write_vqa_data


def test_samples_carry_soft_scores_and_batches_pad_questions(tmp_path):
    root = write_vqa_data(tmp_path / "vqa", images=1)
    questions = read_vqa(root / "vqa.jsonl")
    vocabulary = AnswerVocabulary.build([q.answers for q in questions], min_count=1)
    dataset = VqaTrainingSet(questions, vocabulary)
    sample = dataset[0]  # "how many stars are there?": 9 x "2", 1 x "maybe" (not in the vocabulary)
    assert float(sample.target[vocabulary.index("2")]) == 1.0 and float(sample.target.sum()) == 1.0
    collator = VqaCollator(load_tokenizer(), 64, PreprocessConfig(min_size=64, max_size=64))
    batch = collator([dataset[i] for i in range(len(dataset))])
    assert batch.images.shape == (4, 3, 64, 64)
    assert batch.targets.shape == (4, len(vocabulary))
    assert batch.input_ids.shape == batch.attention_mask.shape and batch.input_ids.shape[0] == 4
    assert int(batch.attention_mask.sum(dim=1).max()) == batch.input_ids.shape[1]  # padded to the longest


def test_long_questions_and_questions_without_answers_are_errors(tmp_path):
    root = write_vqa_data(tmp_path / "vqa", images=1)
    questions = read_vqa(root / "vqa.jsonl")
    vocabulary = AnswerVocabulary.build([q.answers for q in questions], min_count=1)
    dataset = VqaTrainingSet(questions, vocabulary)
    collator = VqaCollator(load_tokenizer(), 5, PreprocessConfig(min_size=64, max_size=64))
    with pytest.raises(DataError, match="longer than the model's text window of 5 tokens"):
        collator([dataset[0]])
    unanswered = VqaQuestion(1, 1, "is it red?", root / "images/001.png")
    with pytest.raises(DataError, match="has no answers"):
        VqaTrainingSet([unanswered], vocabulary)
