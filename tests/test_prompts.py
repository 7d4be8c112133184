"""Tests of prompts and tokenization against the official GLIP tokenization facts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from glip import prompts
from glip.prompts import (
    Prompt,
    build_caption_prompt,
    build_class_prompt,
    PromptPiece,
    chunk_caption_prompt,
    chunk_class_names,
    chunk_prompt_pieces,
    clean_name,
    count_prompt_tokens,
    extract_noun_phrases,
    tokenize_prompt,
)
from glip.tokenizer import load_tokenizer
from support import require_reference

ONE_TOKEN = 1.0 / (1.0 + 1e-6)  # 0.999999: a one-token phrase after the official normalisation
THREE_TOKENS = 1.0 / (3.0 + 1e-6)


# --- tokenizer ---------------------------------------------------------------------------------


def test_tokenizer_is_bert_base_uncased_and_cached() -> None:
    tokenizer = load_tokenizer()
    assert load_tokenizer() is tokenizer
    assert len(tokenizer) == 30522
    assert tokenizer.pad_token_id == 0 and tokenizer.cls_token_id == 101 and tokenizer.sep_token_id == 102
    assert tokenizer.tokenize("Whiskers") == ["w", "##his", "##kers"]
    assert tokenizer.tokenize("Traffic-Light") == ["traffic", "-", "light"]
    # No truncation inherited from the package's tokenizer.json.
    assert len(tokenizer("word " * 600)["input_ids"]) == 602


# --- clean_name and class prompts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("person", "person"),
        ("traffic_light", "traffic light"),
        ("bow_(weapon)", "bow"),
        ("Hot Dog", "Hot Dog"),
        ("a__b", "a b"),
        ("  padded  ", "padded"),
    ],
)
def test_clean_name(name: str, expected: str) -> None:
    assert clean_name(name) == expected


def test_class_prompt_spans() -> None:
    prompt = build_class_prompt(["person", "rocket"])
    assert prompt.caption == "person. rocket."
    assert prompt.phrases == ["person", "rocket"]
    assert prompt.spans == [[(0, 6)], [(8, 14)]]


def test_class_prompt_errors() -> None:
    with pytest.raises(ValueError, match="no class names"):
        build_class_prompt([])
    with pytest.raises(ValueError, match="empty after cleaning"):
        build_class_prompt(["cat", "(nothing)"])


# --- tokenization facts of the official model ---------------------------------------------------


def test_reference_caption_person_rocket() -> None:
    prompt = build_class_prompt(["person", "rocket", "flag", "helmet"])
    assert prompt.caption == "person. rocket. flag. helmet."
    assert prompt.spans == [[(0, 6)], [(8, 14)], [(16, 20)], [(22, 28)]]
    tokenized = tokenize_prompt(prompt)
    ids = [101, 2711, 1012, 7596, 1012, 5210, 1012, 10412, 1012, 102]
    assert tokenized.input_ids.shape == (256,) and tokenized.input_ids.dtype == torch.long
    assert tokenized.input_ids[:10].tolist() == ids
    assert tokenized.input_ids[10:].eq(0).all()
    assert tokenized.attention_mask.dtype == torch.long
    assert tokenized.attention_mask.tolist() == [1] * 10 + [0] * 246
    assert tokenized.num_tokens == 10
    assert tokenized.token_indices == [[1], [3], [5], [7]]
    assert tokenized.positive_map.shape == (4, 256) and tokenized.positive_map.dtype == torch.float32
    assert tokenized.positive_map[0, 1].item() == pytest.approx(ONE_TOKEN, rel=1e-7)
    assert tokenized.positive_map[0, 1].item() < 1.0
    assert tokenized.positive_map_binary.sum().item() == 4


def test_reference_caption_whiskers() -> None:
    tokenized = tokenize_prompt(build_class_prompt(["cat", "sofa", "whiskers", "ear"]))
    ids = [101, 4937, 1012, 10682, 1012, 1059, 24158, 11451, 1012, 4540, 1012, 102]
    assert tokenized.input_ids[:12].tolist() == ids
    assert tokenized.token_indices == [[1], [3], [5, 6, 7], [9]]
    whiskers = tokenized.positive_map[2]
    np.testing.assert_allclose(whiskers[5:8].numpy(), [THREE_TOKENS] * 3, rtol=1e-7)
    assert whiskers.sum().item() == pytest.approx(3 * THREE_TOKENS, rel=1e-6)
    assert tokenized.positive_map[3, 9].item() == pytest.approx(ONE_TOKEN, rel=1e-7)
    assert tokenized.positive_map_binary[2].tolist()[:9] == [0, 0, 0, 0, 0, 1, 1, 1, 0]


@pytest.mark.parametrize(
    ("model", "names"),
    [("glip_t", ["person", "rocket", "flag", "helmet"]), ("glip_t_a", ["cat", "sofa", "whiskers", "ear"])],
)
def test_matches_official_reference_arrays(model: str, names: list[str]) -> None:
    reference = np.load(require_reference(model, "case_a", "inference.npz"))
    tokenized = tokenize_prompt(build_class_prompt(names))
    np.testing.assert_array_equal(tokenized.input_ids.numpy()[None], reference["input_ids"])
    np.testing.assert_array_equal(tokenized.attention_mask.numpy()[None], reference["attention_mask"])
    np.testing.assert_allclose(tokenized.positive_map.numpy(), reference["positive_map"], rtol=1e-7)


def test_positive_map_edge_characters_follow_official_fallback() -> None:
    # A span starting and ending on spaces falls back to the neighbouring characters.
    prompt = Prompt(caption="a  red car", phrases=["red"], spans=[[(2, 7)]])
    tokenized = tokenize_prompt(prompt)
    assert tokenized.token_indices == [[2]]
    # A span that reaches no token is skipped, and a phrase with no token is an error.
    with pytest.raises(ValueError, match="covers no token"):
        tokenize_prompt(Prompt(caption="a    car", phrases=["gap"], spans=[[(1, 5)]]))


def test_too_long_caption() -> None:
    prompt = build_caption_prompt("word " * 300, [(0, 4)])
    with pytest.raises(ValueError, match=r"prompt is 302 tokens, more than the model's window of 256"):
        tokenize_prompt(prompt)
    assert tokenize_prompt(prompt, max_length=302).num_tokens == 302


# --- caption prompts ----------------------------------------------------------------------------


def test_caption_phrases_by_string_and_span() -> None:
    caption = "A cat sits on the Sofa next to a cat toy."
    prompt = build_caption_prompt(caption, ["cat", "sofa", (2, 5), "Cat"])
    assert prompt.spans == [[(2, 5)], [(18, 22)], [(2, 5)], [(33, 36)]]
    assert prompt.phrases == ["cat", "sofa", "cat", "Cat"]
    tokenized = tokenize_prompt(prompt)
    assert [len(indices) for indices in tokenized.token_indices] == [1, 1, 1, 1]
    assert tokenized.token_indices[0] == tokenized.token_indices[2]
    assert tokenized.token_indices[0] != tokenized.token_indices[3]


def test_repeated_phrase_takes_next_occurrence() -> None:
    prompt = build_caption_prompt("dog and dog and dog", ["dog", "dog", "dog"])
    assert prompt.spans == [[(0, 3)], [(8, 11)], [(16, 19)]]
    with pytest.raises(ValueError, match="'dog' not found again"):
        build_caption_prompt("dog and dog", ["dog", "dog", "dog"])


def test_caption_errors() -> None:
    with pytest.raises(ValueError, match=r"'zebra' not found in the caption 'a cat'"):
        build_caption_prompt("a cat", ["zebra"])
    for caption in ("", "   \n"):
        with pytest.raises(ValueError, match="caption is empty"):
            build_caption_prompt(caption, ["cat"])
    for span in [(3, 3), (-1, 2), (0, 99)]:
        with pytest.raises(ValueError, match="not a non-empty range"):
            build_caption_prompt("a cat", [span])
    with pytest.raises(ValueError, match="only whitespace"):
        build_caption_prompt("a  cat", [(1, 3)])
    with pytest.raises(ValueError, match="empty phrase"):
        build_caption_prompt("a cat", ["  "])


# --- noun phrases ---------------------------------------------------------------------------------


def test_spacy_noun_phrases() -> None:
    pytest.importorskip("spacy")
    if prompts._load_spacy_pipeline() is None:
        pytest.skip("no English spaCy model installed (pip install \"glip[spacy]\")")
    caption = "a small red star above a blue ring"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spans = extract_noun_phrases(caption)
    texts = [caption[start:end] for start, end in spans]
    assert any("star" in text for text in texts)
    assert any("ring" in text for text in texts)
    prompt = build_caption_prompt(caption)
    assert prompt.phrases == texts
    assert all(tokenize_prompt(prompt).token_indices)


def test_noun_phrase_fallback_without_spacy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prompts, "_load_spacy_pipeline", lambda: None)
    caption = "  a small red star above a blue ring "
    with pytest.warns(UserWarning, match=r'pip install "glip\[spacy\]"'):
        prompt = build_caption_prompt(caption)
    assert prompt.phrases == ["a small red star above a blue ring"]
    assert prompt.spans == [[(2, 36)]]


def test_noun_phrase_fallback_when_none_found(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoChunks:
        noun_chunks: list = []

    monkeypatch.setattr(prompts, "_load_spacy_pipeline", lambda: (lambda text: NoChunks()))
    with pytest.warns(UserWarning, match="no noun phrase"):
        assert extract_noun_phrases("run!") == [(0, 4)]


# --- chunking -------------------------------------------------------------------------------------


def _many_names() -> list[str]:
    long_names = [
        "hydrochlorofluorocarbon canister",
        "electroencephalograph_(medical)",
        "pneumonoultramicroscopic silicovolcano dust",
    ]
    return [f"object number {i}" if i % 7 else long_names[i % 3] for i in range(300)]


def _indices(chunks) -> list[list[int]]:
    return [list(range(c.phrase_offset, c.phrase_offset + len(c.prompt.phrases))) for c in chunks]


def test_chunking_covers_all_names_in_order() -> None:
    names = _many_names()
    tokenizer = load_tokenizer()
    chunks = _indices(chunk_class_names(names, max_length=256))
    assert len(chunks) > 1
    assert [index for chunk in chunks for index in chunk] == list(range(len(names)))
    for number, chunk in enumerate(chunks):
        prompt = build_class_prompt([names[i] for i in chunk])
        length = len(tokenizer(prompt.caption)["input_ids"])
        assert length <= 256
        if number + 1 < len(chunks):  # greedy: the next name would not have fitted
            with_next = build_class_prompt([names[i] for i in chunk + [chunks[number + 1][0]]])
            assert len(tokenizer(with_next.caption)["input_ids"]) > 256
        tokenized = tokenize_prompt(prompt)
        assert all(tokenized.token_indices)
        assert tokenized.positive_map.shape == (len(chunk), 256)


def test_chunks_are_the_class_prompts_tokenized() -> None:
    names = _many_names()[:40]
    for chunk in chunk_class_names(names, max_length=64):
        names_here = names[chunk.phrase_offset:chunk.phrase_offset + len(chunk.prompt.phrases)]
        assert chunk.prompt == build_class_prompt(names_here)
        assert chunk.tokens.token_indices == tokenize_prompt(chunk.prompt, 64).token_indices
        assert chunk.tokens.num_tokens <= 64


def test_prompt_pieces_score_only_their_phrase() -> None:
    pieces = [PromptPiece("fish"), PromptPiece("stingray", suffix=", which is flat and round")]
    (chunk,) = chunk_prompt_pieces(pieces, max_length=256)
    assert chunk.prompt.caption == "fish. stingray, which is flat and round."
    assert chunk.prompt.spans == [[(0, 4)], [(6, 14)]]
    assert chunk.tokens.token_indices == [[1], [3, 4]]  # "sting", "##ray"


def test_more_than_80_phrases_in_one_chunk() -> None:
    names = [f"thing{i}" for i in range(120)]  # "thing" "##N": 3 tokens with the "."
    chunks = _indices(chunk_class_names(names, max_length=1024))
    assert chunks == [list(range(120))]
    tokenized = tokenize_prompt(build_class_prompt(names), max_length=1024)
    assert len(tokenized.token_indices) == 120 and all(tokenized.token_indices)
    single = _indices(chunk_class_names(["a", "b", "c", "d", "e", "f", "g", "h"] * 12))
    assert len(single) == 1 and len(single[0]) == 96


def test_chunking_errors() -> None:
    with pytest.raises(ValueError, match="'word word word word' alone"):
        chunk_class_names(["cat", "word word word word"], max_length=5)
    with pytest.raises(ValueError, match="no class names"):
        chunk_class_names([])
    assert _indices(chunk_class_names(["person", "rocket", "flag"], max_length=6)) == [[0, 1], [2]]


def test_a_caption_that_fits_is_one_chunk() -> None:
    prompt = build_caption_prompt("a small red star above a blue ring", ["small red star", "blue ring"])
    (chunk,) = chunk_caption_prompt(prompt, max_length=256)
    assert chunk.prompt == prompt and chunk.phrase_offset == 0
    assert chunk.tokens.token_indices == tokenize_prompt(prompt, 256).token_indices


def test_a_long_caption_is_cut_into_windows_of_its_phrases() -> None:
    tokenizer = load_tokenizer()
    words = ["red star", "blue ring", "green cross", "small hexagon", "big square", "black arrow"]
    caption = "there is a " + ", next to a ".join(words) + " in the picture"
    prompt = build_caption_prompt(caption, words)
    assert count_prompt_tokens(caption, tokenizer) > 16
    chunks = chunk_caption_prompt(prompt, max_length=16, tokenizer=tokenizer)
    assert len(chunks) > 1
    seen = []
    for chunk in chunks:
        assert chunk.tokens.num_tokens <= 16
        for offset, (phrase, spans) in enumerate(zip(chunk.prompt.phrases, chunk.prompt.spans)):
            (start, end), = spans
            assert chunk.prompt.caption[start:end] == phrase == words[chunk.phrase_offset + offset]
            seen.append(chunk.phrase_offset + offset)
    assert seen == list(range(len(words)))
    with pytest.raises(ValueError, match="alone is longer"):
        chunk_caption_prompt(prompt, max_length=3, tokenizer=tokenizer)
