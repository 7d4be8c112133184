"""Category prompts: the same chunks as inference for plain names, overrides mapped back to ids."""

from __future__ import annotations

import pytest
from eval_helpers import coco

from glip.evaluation import CategoryPrompt, EvaluationError, detection_dataset_from_coco
from glip.evaluation.prompt_overrides import load_prompt_overrides
from glip.evaluation.prompts import build_category_chunks, build_prompt
from glip.prompts import clean_name
from glip.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_plain_names_chunk_like_the_predictor(small_predictor):
    names = [f"category_number {i} with a longish (descriptive) name" for i in range(150)]
    ours = build_category_chunks([CategoryPrompt(clean_name(n)) for n in names], small_predictor.tokenizer, 256)
    theirs = small_predictor.build_prompts(classes=names)
    assert len(ours) == len(theirs) > 1
    for a, b in zip(ours, theirs):
        assert a.prompt.caption == b.prompt.caption and a.prompt.spans == b.prompt.spans
        assert a.phrase_offset == b.phrase_offset
        assert a.tokens.token_indices == b.tokens.token_indices
        assert a.tokens.num_tokens <= 256


def test_override_with_context_scores_only_the_phrase(tokenizer):
    prompts = [CategoryPrompt("fish"), CategoryPrompt("stingray", "", ", which is flat and round")]
    prompt = build_prompt(prompts)
    assert prompt.caption == "fish. stingray, which is flat and round."
    assert prompt.spans == [[(0, 4)], [(6, 14)]]
    (chunk,) = build_category_chunks(prompts, tokenizer, 256)
    assert chunk.tokens.token_indices == [[1], [3, 4]]  # "sting", "##ray": the name only, not the context
    assert len(chunk.tokens.token_indices[1]) == len(tokenizer("stingray", add_special_tokens=False)["input_ids"])


def test_chunks_respect_a_small_window(tokenizer):
    prompts = [CategoryPrompt(f"thing {i}") for i in range(40)]
    chunks = build_category_chunks(prompts, tokenizer, 16)
    assert sum(len(c.prompt.phrases) for c in chunks) == 40
    assert [c.phrase_offset for c in chunks] == sorted({c.phrase_offset for c in chunks})
    assert all(c.tokens.num_tokens <= 16 for c in chunks)
    with pytest.raises(EvaluationError, match="alone is"):
        build_category_chunks([CategoryPrompt("a very long name " * 10)], tokenizer, 16)


def test_dataset_prompt_overrides_by_name_or_id():
    gt = coco([1], [(1, 5, [0, 0, 5, 5])], [(5, "stingray"), (9, "puffin"), (2, "traffic_light")])
    dataset = detection_dataset_from_coco(gt, prompts={
        "stingray": "stingray, which is flat and round",
        9: {"phrase": "puffin", "suffix": ", a black and white bird"},
    })
    prompts = {c.id: c.prompt for c in dataset.categories}
    assert prompts[5] == CategoryPrompt("stingray, which is flat and round")
    assert prompts[9].text == "puffin, a black and white bird" and prompts[9].phrase == "puffin"
    assert prompts[2] == CategoryPrompt("traffic light")
    with pytest.raises(EvaluationError, match="1 prompt overrides name no category \\('shark'\\)"):
        detection_dataset_from_coco(gt, prompts={"shark": "a shark"})
    with pytest.raises(EvaluationError, match="unknown keys"):
        detection_dataset_from_coco(gt, prompts={"puffin": {"text": "x"}})


def test_load_prompt_overrides_from_yaml(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_text("stingray: stingray, which is flat and round\n9: {phrase: puffin, suffix: ', a bird'}\n")
    overrides = load_prompt_overrides(path)
    gt = coco([1], [(1, 5, [0, 0, 5, 5])], [(5, "stingray"), (9, "puffin")])
    prompts = [c.prompt for c in detection_dataset_from_coco(gt, prompts=overrides).categories]
    assert [p.text for p in prompts] == ["stingray, which is flat and round", "puffin, a bird"]
    assert load_prompt_overrides(None) is None
    with pytest.raises(EvaluationError, match="does not exist"):
        load_prompt_overrides(tmp_path / "nope.yaml")
    path.write_text("- a list\n- of prompts\n")
    with pytest.raises(EvaluationError, match="must map category names"):
        load_prompt_overrides(path)
    path.write_text("a: [unclosed\n")
    with pytest.raises(EvaluationError, match="is not valid YAML"):
        load_prompt_overrides(path)
