"""The head passes of the detection engine when the image side has already run: prompt chunks batched.

A class list longer than the token window becomes several prompt chunks. The image side (Swin +
FPN) runs once per image batch; what runs per chunk depends on the head:

* **fused head** (GLIP-T, GLIP-L): the tower reads the text, so it runs for every (image, chunk)
  pair. Up to ``chunks_per_pass`` chunks go through it together: the rows of one pass are the
  (image, chunk) pairs of those chunks, the image features repeated once per chunk, the chunks'
  text encoded once each (padded to the longest of them: padding is masked everywhere, so a
  chunk's results do not depend on its neighbours, up to float rounding).
* **tower without text** (GLIP-T(A): no fusion, no text layers): the tower and the box and
  centerness predictions run once per image batch; per chunk only the text encoder and the final
  dot product run.

Each pass yields the rows' image indices, their chunks and a `GLIPOutput` whose head rows follow
them (``output.image`` holds the batch's per-image features).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from glip.modeling.glip import GLIP, GLIPOutput, ImageFeatures
from glip.modeling.head import HeadOutput
from glip.modeling.text_encoder import TextFeatures
from glip.prompts import PromptChunk

Pass = tuple[list[int], list[PromptChunk], GLIPOutput]


def encode_chunks(model: GLIP, chunks: Sequence[PromptChunk], trim_text_padding: bool) -> TextFeatures:
    """The text features of distinct chunks in one batch, [K, L, D], L = the longest chunk's real
    tokens (or the full window without ``trim_text_padding``)."""
    device = model.head.bias_lang.device
    tokens = [chunk.tokens for chunk in chunks]
    length = max(t.num_tokens for t in tokens) if trim_text_padding else tokens[0].input_ids.shape[0]
    ids = torch.stack([t.input_ids[:length] for t in tokens]).to(device)  # [K, L]
    mask = torch.stack([t.attention_mask[:length] for t in tokens]).to(device)  # [K, L]
    return model.encode_text(ids, mask)


def _text_rows(model: GLIP, chunks: list[PromptChunk], trim_text_padding: bool) -> TextFeatures:
    """Text features with one row per entry of ``chunks`` (each distinct chunk encoded once)."""
    distinct: dict[int, int] = {}
    for chunk in chunks:
        distinct.setdefault(id(chunk), len(distinct))
    unique = list({id(chunk): chunk for chunk in chunks}.values())
    text = encode_chunks(model, unique, trim_text_padding)  # [K, L, D]
    if len(unique) == 1:
        return TextFeatures(hidden=text.hidden.expand(len(chunks), -1, -1), mask=text.mask.expand(len(chunks), -1),
                            embedded=text.embedded.expand(len(chunks), -1, -1))
    rows = torch.tensor([distinct[id(chunk)] for chunk in chunks], device=text.hidden.device)
    return TextFeatures(hidden=text.hidden.index_select(0, rows), mask=text.mask.index_select(0, rows),
                        embedded=text.embedded.index_select(0, rows))


def _rows(tensor: torch.Tensor, members: list[int]) -> torch.Tensor:
    """``tensor[members]`` along the batch, without a copy when it is the whole batch in order."""
    if members == list(range(tensor.shape[0])):
        return tensor
    return tensor.index_select(0, torch.tensor(members, device=tensor.device))


def chunk_passes(model: GLIP, features: ImageFeatures, per_image: list[list[PromptChunk]], chunks_per_pass: int,
                 trim_text_padding: bool = True, before_pass: Callable[[], None] | None = None) -> Iterator[Pass]:
    """The head passes over every image's chunks, given the image side ``features`` of the batch.

    Args:
        per_image: each image's chunks (the same list object for all images of a class list).
        chunks_per_pass: with a fused head, how many chunk positions share one pass (>= 1); the
            rows of a pass are position-major, so each image meets its chunks in order.
        before_pass: called before each pass (the engine's cancellation check, which raises).
    """
    if chunks_per_pass < 1:
        raise ValueError(f"chunks_per_pass must be at least 1, got {chunks_per_pass}")
    positions = max(len(chunks) for chunks in per_image)
    rounds = [[(image, chunks[position]) for image, chunks in enumerate(per_image) if position < len(chunks)]
              for position in range(positions)]
    if model.head.tower_reads_text:
        for start in range(0, positions, chunks_per_pass):
            if before_pass is not None:
                before_pass()
            pairs = [pair for round_pairs in rounds[start:start + chunks_per_pass] for pair in round_pairs]
            yield _fused_pass(model, features, pairs, trim_text_padding)
    else:
        yield from _text_free_passes(model, features, rounds, trim_text_padding, before_pass)


def _fused_pass(model: GLIP, features: ImageFeatures, pairs: list[tuple[int, PromptChunk]],
                trim_text_padding: bool) -> Pass:
    """One pass of the text side and the fused head for (image, chunk) pairs, one row each."""
    members = [image for image, _ in pairs]
    chunks = [chunk for _, chunk in pairs]
    text = _text_rows(model, chunks, trim_text_padding)
    levels = [_rows(level, members) for level in features.levels]  # per level [R, C, H_l, W_l]
    first = _rows(features.stages[0], members) if model.config.head.alignment_skip else None
    head = model.head(levels, text, first)
    return members, chunks, GLIPOutput(image=features, text=text, head=head, anchors=model.anchors(features.levels))


def _text_free_passes(model: GLIP, features: ImageFeatures, rounds: list[list[tuple[int, PromptChunk]]],
                      trim_text_padding: bool, before_pass: Callable[[], None] | None) -> Iterator[Pass]:
    """The tower and the box predictions once; per chunk position the text and the dot product."""
    if before_pass is not None:
        before_pass()
    head = model.head
    # The tower reads no text here (no fusion, no text layers): any text gives the same levels.
    batch = features.levels[0].shape[0]
    probe = _text_rows(model, [rounds[0][0][1]] * batch, trim_text_padding)
    visual, _ = head.tower(features.levels, probe)
    first = features.stages[0] if model.config.head.alignment_skip else None
    boxes, centerness, queries = head.visual_predictions(visual, first)
    anchors = model.anchors(features.levels)
    for index, pairs in enumerate(rounds):
        if index > 0 and before_pass is not None:
            before_pass()
        members = [image for image, _ in pairs]
        chunks = [chunk for _, chunk in pairs]
        text = _text_rows(model, chunks, trim_text_padding)
        logits = head.token_logits([_rows(q, members) for q in queries], text.hidden, text)
        output = HeadOutput(visual=[_rows(v, members) for v in visual], text=text.hidden,
                            box_regression=[_rows(b, members) for b in boxes],
                            centerness=[_rows(c, members) for c in centerness], token_logits=logits)
        yield members, chunks, GLIPOutput(image=features, text=text, head=output, anchors=anchors)
