"""Detection prompts for a dataset's categories, split into chunks that fit the text window.

Each category contributes ``prefix + phrase + suffix``; the pieces are joined with ``". "`` and end
with ``"."``, exactly as `glip.prompts.build_class_prompt` joins class names, so with no override
the chunks are the ones `GLIPPredictor.build_prompts` makes at inference. A category is scored on
the tokens of its ``phrase``. Chunks are filled in category order while they fit ``max_length``
tokens (``[CLS]`` and ``[SEP]`` included); the image side is then computed once per image and
each chunk costs only the text side and the head (see `glip.evaluation.inference`).
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from glip.evaluation.common import EvaluationError
from glip.evaluation.detection_data import CategoryPrompt
from glip.predictor import PromptChunk
from glip.prompts import Prompt, tokenize_prompt

_SPECIAL_TOKENS = 2  # [CLS] and [SEP]


def build_prompt(prompts: Sequence[CategoryPrompt]) -> Prompt:
    """One caption for these categories, with the character span of each one's phrase."""
    caption = ""
    spans = []
    for index, prompt in enumerate(prompts):
        if index > 0:
            caption += ". "
        start = len(caption) + len(prompt.prefix)
        spans.append([(start, start + len(prompt.phrase))])
        caption += prompt.text
    caption += "."
    return Prompt(caption=caption, phrases=[p.phrase for p in prompts], spans=spans)


def _num_tokens(text: str, tokenizer: PreTrainedTokenizerBase) -> int:
    return len(tokenizer(text)["input_ids"])


def build_category_chunks(prompts: Sequence[CategoryPrompt], tokenizer: PreTrainedTokenizerBase,
                          max_length: int) -> list[PromptChunk]:
    """Prompt chunks covering ``prompts`` in order; ``phrase_offset`` = index of the first one.

    Raises:
        EvaluationError: a category alone does not fit the window.
    """
    prompts = list(prompts)
    if not prompts:
        raise EvaluationError("no categories to prompt for")
    costs = [len(tokenizer(p.text, add_special_tokens=False)["input_ids"]) + 1 for p in prompts]  # text + "."
    chunks = []
    start = 0
    while start < len(prompts):
        end, used = start, _SPECIAL_TOKENS
        while end < len(prompts) and used + costs[end] <= max_length:
            used += costs[end]
            end += 1
        # The pieces' WordPiece counts add up to the caption's in practice; should joining ever cost
        # more, drop categories from the end of the chunk until its real caption fits.
        while end - start > 1 and _num_tokens(build_prompt(prompts[start:end]).caption, tokenizer) > max_length:
            end -= 1
        if end == start or _num_tokens(build_prompt(prompts[start:end]).caption, tokenizer) > max_length:
            raise EvaluationError(
                f"the prompt of category {prompts[start].text!r} alone is longer than the model's window of "
                f"{max_length} tokens: shorten it"
            )
        prompt = build_prompt(prompts[start:end])
        chunks.append(PromptChunk(prompt, tokenize_prompt(prompt, max_length, tokenizer), start))
        start = end
    return chunks
