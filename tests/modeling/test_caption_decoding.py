"""Greedy and beam search on hand-made next-token tables: beam 1 is greedy, a wider beam finds a
better caption greedy misses, EOS and the length limit, banned tokens."""

from __future__ import annotations

import math

import pytest
import torch

from glip.modeling.caption_decoding import beam_search, greedy_search

BOS, EOS, VOCAB = 0, 1, 8


def random_step(seed: int):
    """log-probabilities that depend on the image, the prefix length and its last token."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(3, 40, VOCAB, VOCAB, generator=generator) * 2  # [image, length, last token, next]

    def step(prefixes: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        length = prefixes.shape[1]
        return table[images, length, prefixes[:, -1]].log_softmax(dim=-1)

    return step


def table_step(rows: dict[tuple[int, ...], dict[int, float]]):
    """Probabilities per prefix (after BOS); unlisted tokens get probability 0."""

    def step(prefixes: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        out = torch.full((prefixes.shape[0], VOCAB), float("-inf"))
        for row, prefix in enumerate(prefixes.tolist()):
            for token, p in rows[tuple(prefix[1:])].items():
                out[row, token] = math.log(p)
        return out

    return step


@pytest.mark.parametrize("seed", range(6))
def test_beam_one_is_greedy(seed):
    step = random_step(seed)
    greedy = greedy_search(step, 3, BOS, EOS, max_tokens=12)
    beam = beam_search(step, 3, BOS, EOS, max_tokens=12, beam=1)
    assert [g.token_ids for g in greedy] == [b.token_ids for b in beam]
    assert [g.truncated for g in greedy] == [b.truncated for b in beam]
    for g, b in zip(greedy, beam):
        assert g.score == pytest.approx(b.score, abs=1e-5)


def test_wider_beam_finds_what_greedy_misses():
    # greedy takes 2 (0.6) then must end weakly; 3 (0.4) leads to a sure end: 0.4 > 0.6 * 0.5
    rows = {(): {2: 0.6, 3: 0.4}, (2,): {4: 0.5, 5: 0.5}, (3,): {EOS: 1.0}, (2, 4): {EOS: 1.0},
            (2, 5): {EOS: 1.0}}
    greedy = greedy_search(table_step(rows), 1, BOS, EOS, max_tokens=5)[0]
    beam = beam_search(table_step(rows), 1, BOS, EOS, max_tokens=5, beam=2)[0]
    assert greedy.token_ids == [2, 4] and beam.token_ids == [3]
    assert beam.score == pytest.approx(math.log(0.4)) and beam.score > greedy.score
    assert not beam.truncated and not greedy.truncated


def test_length_limit_flags_truncated_captions():
    rows = {(): {2: 0.9, EOS: 0.1}, (2,): {2: 0.9, EOS: 0.1}, (2, 2): {2: 0.9, EOS: 0.1},
            (2, 2, 2): {2: 0.9, EOS: 0.1}}
    for decode in (lambda s: greedy_search(s, 1, BOS, EOS, max_tokens=3),
                   lambda s: beam_search(s, 1, BOS, EOS, max_tokens=3, beam=1)):
        result = decode(table_step(rows))[0]
        assert result.token_ids == [2, 2, 2] and result.truncated
    # a wider beam keeps a finished caption in reserve and prefers it to a cut-off one
    result = beam_search(table_step(rows), 1, BOS, EOS, max_tokens=3, beam=2)[0]
    assert not result.truncated and result.token_ids == []  # [EOS] at once: log 0.1 beats 0.9^k * 0.1


def test_a_caption_that_ends_exactly_at_the_limit_is_not_truncated():
    rows = {(): {2: 1.0}, (2,): {3: 1.0}, (2, 3): {EOS: 1.0}}
    for result in (greedy_search(table_step(rows), 1, BOS, EOS, max_tokens=2)[0],
                   beam_search(table_step(rows), 1, BOS, EOS, max_tokens=2, beam=3)[0]):
        assert result.token_ids == [2, 3] and not result.truncated


def test_banned_tokens_are_never_generated():
    rows = {(): {6: 0.7, 2: 0.3}, (2,): {6: 0.7, EOS: 0.3}}
    for result in (greedy_search(table_step(rows), 1, BOS, EOS, max_tokens=4, banned_ids=(6,))[0],
                   beam_search(table_step(rows), 1, BOS, EOS, max_tokens=4, beam=2, banned_ids=(6,))[0]):
        assert result.token_ids == [2] and 6 not in result.token_ids


def test_images_decode_independently_in_one_batch():
    step = random_step(3)
    together = beam_search(step, 3, BOS, EOS, max_tokens=10, beam=3)
    alone = [beam_search(lambda p, i, k=k: step(p, torch.full_like(i, k)), 1, BOS, EOS, max_tokens=10, beam=3)[0]
             for k in range(3)]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]


@pytest.mark.parametrize("bad", [{"max_tokens": 0}, {"beam": 0}, {"beam": True}])
def test_bad_settings_are_refused(bad):
    options = {"max_tokens": 4, "beam": 2, **bad}
    with pytest.raises(ValueError):
        beam_search(random_step(0), 1, BOS, EOS, **options)
