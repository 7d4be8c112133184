"""A tiny random GLIP with a caption head, and tiny caption data, for the captioning tests: they
check causality, decoding, plumbing and formats, not caption quality."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def caption_glip(max_tokens: int = 6, tie: bool = True):
    """The seeded glip-tiny (64 px input) with a caption head of ``max_tokens``, in eval mode."""
    import torch

    from glip.config import CaptionConfig, get_config
    from glip.modeling.glip import GLIP

    config = get_config("glip-tiny")
    config = dataclasses.replace(config, caption=CaptionConfig(enabled=True, max_tokens=max_tokens,
                                                               tie_word_embeddings=tie))
    config.input = dataclasses.replace(config.input, min_size=64, max_size=64)
    torch.manual_seed(0)
    return GLIP(config).eval()


def save_caption_glip(path: Path, max_tokens: int = 6) -> Path:
    from glip.checkpoint import save_glip

    return save_glip(caption_glip(max_tokens), path)


def write_caption_data(folder: Path, count: int = 4) -> Path:
    """``count`` random 48 px pictures and a captions.jsonl naming them (two captions each)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        pixels = np.random.default_rng(index).integers(0, 256, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
        lines.append({"image": f"img{index}.png", "captions": [f"a red star number {index}", "two blue squares"]})
    path = folder / "captions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
