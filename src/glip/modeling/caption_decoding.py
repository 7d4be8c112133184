"""Caption generation: greedy and beam search with a length limit.

Decoding works on any ``step`` function that maps the token prefixes of N rows (and which image
each row belongs to) to log-probabilities of the next token, so it is tested without a model.

Rules (ours; GLIPv2's decoder is not published):

- Every caption starts with ``bos_id`` ([CLS]) and ends when ``eos_id`` ([SEP]) is chosen; the
  EOS is not part of the returned tokens.
- ``banned_ids`` (the other special tokens: padding, [CLS], [MASK], [UNK]) are never generated.
- A hypothesis scores the sum of its tokens' log-probabilities, EOS included (no length penalty).
- Beam search keeps the ``beam`` best unfinished hypotheses per image; a finished one (EOS chosen)
  is set aside, and an image is done when its best finished score is at least the best unfinished
  one (scores only decrease, so no later hypothesis can win) or nothing is left unfinished. With
  ``beam=1`` it makes greedy search's choices exactly.
- A finished hypothesis counts only when its EOS ranks among the image's ``beam`` best candidates
  of the step (greedy: when EOS is the best token), as in common beam search implementations.
- The length limit: at most ``max_tokens`` generated tokens. After that one more step may only end
  a caption (EOS, ranked as above). An image with no finished hypothesis then gets its best
  unfinished one, flagged ``truncated`` (the model would have gone on); an image with a finished
  one gets the best finished one (an unfinished one is never preferred).

Example:
    >>> result = beam_search(step, num_images=2, bos_id=101, eos_id=102, max_tokens=20, beam=3)  # doctest: +SKIP
    >>> result[0].token_ids, result[0].truncated  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

# (prefixes [N, t] of token ids, image of each row [N]) -> next-token log-probabilities [N, V]
StepFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DecodedCaption:
    """One image's generated caption: its tokens (no BOS/EOS), their summed log-probability
    (EOS included when finished), and whether the length limit stopped it before an EOS."""

    token_ids: list[int]
    score: float
    truncated: bool


def _check(max_tokens: int, beam: int = 1) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a whole number of at least 1, got {max_tokens!r}")
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be a whole number of at least 1, got {beam!r}")


def _scores(step: StepFunction, prefixes: list[list[int]], images: list[int], bos_id: int,
            banned_ids: Sequence[int], device: torch.device | str) -> torch.Tensor:
    """Next-token log-probabilities [R, V] of equally long prefixes (tokens after BOS)."""
    ids = torch.tensor([[bos_id] + prefix for prefix in prefixes], dtype=torch.long, device=device)  # [R, t+1]
    log_probs = step(ids, torch.tensor(images, dtype=torch.long, device=device)).float()
    if banned_ids:
        log_probs[:, list(banned_ids)] = float("-inf")
    return log_probs


def greedy_search(step: StepFunction, num_images: int, bos_id: int, eos_id: int, max_tokens: int,
                  banned_ids: Sequence[int] = (), device: torch.device | str = "cpu") -> list[DecodedCaption]:
    """The most likely next token at every step, for ``num_images`` images at once."""
    _check(max_tokens)
    tokens: list[list[int]] = [[] for _ in range(num_images)]
    scores = [0.0] * num_images
    ended = [False] * num_images
    for length in range(max_tokens + 1):
        open_rows = [i for i in range(num_images) if not ended[i]]
        if not open_rows:
            break
        log_probs = _scores(step, [tokens[i] for i in open_rows], open_rows, bos_id, banned_ids, device)
        values, best = log_probs.max(dim=-1)  # [R]
        for row, token, value in zip(open_rows, best.tolist(), values.tolist()):
            if token == eos_id:
                ended[row] = True
                scores[row] += value
            elif length < max_tokens:
                tokens[row].append(token)
                scores[row] += value
    return [DecodedCaption(t, s, truncated=not e) for t, s, e in zip(tokens, scores, ended)]


@dataclass
class _Beams:
    """One image's hypotheses: (tokens after BOS, score)."""

    alive: list[tuple[list[int], float]]
    finished: list[tuple[list[int], float]] = field(default_factory=list)

    def done(self) -> bool:
        if not self.alive:
            return True
        return bool(self.finished) and max(s for _, s in self.finished) >= self.alive[0][1]

    def result(self) -> DecodedCaption:
        if self.finished:
            tokens, score = max(self.finished, key=lambda item: item[1])
            return DecodedCaption(tokens, score, truncated=False)
        tokens, score = self.alive[0]
        return DecodedCaption(tokens, score, truncated=True)


def beam_search(step: StepFunction, num_images: int, bos_id: int, eos_id: int, max_tokens: int, beam: int = 3,
                banned_ids: Sequence[int] = (), device: torch.device | str = "cpu") -> list[DecodedCaption]:
    """The ``beam`` best hypotheses per image, advanced together (see the module docstring)."""
    _check(max_tokens, beam)
    states = [_Beams(alive=[([], 0.0)]) for _ in range(num_images)]
    for length in range(max_tokens + 1):
        active = [i for i, state in enumerate(states) if not state.done()]
        if not active:
            break
        rows = [(i, hypothesis) for i in active for hypothesis in states[i].alive]
        log_probs = _scores(step, [h[0] for _, h in rows], [i for i, _ in rows], bos_id, banned_ids, device)
        totals = log_probs + torch.tensor([h[1] for _, h in rows], device=log_probs.device)[:, None]  # [R, V]
        start = 0
        for image in active:
            count = len(states[image].alive)
            block = totals[start:start + count].flatten()  # [count * V]
            start += count
            values, flat = block.topk(min(2 * beam, block.numel()))
            _advance(states[image], values.tolist(), flat.tolist(), log_probs.shape[1], eos_id, beam,
                     at_limit=length == max_tokens)
    return [state.result() for state in states]


def _advance(state: _Beams, values: list[float], flat: list[int], vocab: int, eos_id: int, beam: int,
             at_limit: bool) -> None:
    """One step of one image: ranked candidates (score, index into [alive x vocab])."""
    alive = []
    for rank, (value, index) in enumerate(zip(values, flat)):
        if value == float("-inf"):
            break
        tokens, token = state.alive[index // vocab][0], index % vocab
        if token == eos_id:
            if rank < beam:
                state.finished.append((tokens, value))
        elif not at_limit and len(alive) < beam:
            alive.append((tokens + [token], value))
    if not at_limit:
        state.alive = alive
    elif not state.finished:
        state.alive = state.alive[:1]  # the truncated result: the best unfinished hypothesis
    else:
        state.alive = []
