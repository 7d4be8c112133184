"""A tiny random GLIP with a VQA answer head, for the tests of VQA in the outputs (predictor, CLI,
server): they check plumbing, formats and errors, not answer quality."""

from __future__ import annotations

from pathlib import Path

ANSWERS = ("yes", "no", "2", "red", "star")


def save_vqa_glip(path: Path, answers: tuple[str, ...] = ANSWERS) -> Path:
    """A seeded random glip-tiny saved at ``path`` with a random answer head over
    ``answers`` beside it (``X.vqa.safetensors`` and ``X.vqa.json``); returns the model's path."""
    import torch

    from glip.checkpoint import save_glip
    from glip.config import get_config
    from glip.data.vqa_answers import AnswerVocabulary
    from glip.modeling.glip import GLIP
    from glip.modeling.vqa_head import VqaHead, VqaHeadConfig
    from glip.vqa_head_files import head_path_for, save_vqa_head

    torch.manual_seed(0)
    model = GLIP(get_config("glip-tiny")).eval()
    head = VqaHead(VqaHeadConfig(num_answers=len(answers), hidden_dim=16), model.config.text.hidden_size,
                   model.config.head.channels).eval()
    save_glip(model, path)
    vocabulary = AnswerVocabulary(tuple(answers), tuple(range(len(answers), 0, -1)))
    save_vqa_head(head, vocabulary, head_path_for(path), model)
    return path
