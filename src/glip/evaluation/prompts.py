"""Detection prompts for a dataset's categories, split into chunks that fit the text window.

Each category contributes ``prefix + phrase + suffix`` and is scored on the tokens of its
``phrase``; the chunks come from the project's one chunker (`glip.prompts.chunk_prompt_pieces`), so
with no override they are the ones `GLIPPredictor.build_prompts` makes at inference.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from glip.evaluation.common import EvaluationError
from glip.prompts import Prompt, PromptChunk, build_piece_prompt, chunk_prompt_pieces
from glip.prompts import PromptPiece as CategoryPrompt


def build_prompt(prompts: Sequence[CategoryPrompt]) -> Prompt:
    """One caption for these categories, with the character span of each one's phrase."""
    return build_piece_prompt(prompts)


def build_category_chunks(prompts: Sequence[CategoryPrompt], tokenizer: PreTrainedTokenizerBase,
                          max_length: int) -> list[PromptChunk]:
    """Prompt chunks covering ``prompts`` in order; ``phrase_offset`` = index of the first one.

    Raises:
        EvaluationError: no categories, or a category alone does not fit the window.
    """
    if not prompts:
        raise EvaluationError("no categories to prompt for")
    try:
        return chunk_prompt_pieces(prompts, max_length, tokenizer)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
