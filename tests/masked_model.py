"""A tiny random GLIP with the language-aware mask head, for the tests of masks in the outputs
(predictor, CLI, server): they check plumbing and formats, not mask quality."""

from __future__ import annotations

import dataclasses
from pathlib import Path


def save_masked_glip(path: Path, input_sizes: tuple[int, int] | None = None) -> Path:
    """The seeded glip-tiny of the root conftest (zero alignment bias: scores spread around 0.5) with
    an 8-channel mask head, saved in our format at ``path``; ``input_sizes``: (min_size, max_size)
    of its inputs instead of glip-tiny's."""
    import torch

    from glip.checkpoint import save_glip
    from glip.config import MaskHeadConfig, get_config
    from glip.modeling.glip import GLIP

    config = get_config("glip-tiny")
    config = dataclasses.replace(config, mask_head=MaskHeadConfig(enabled=True, channels=8, num_convs=2))
    if input_sizes is not None:
        config = dataclasses.replace(config, input=dataclasses.replace(config.input, min_size=input_sizes[0],
                                                                       max_size=input_sizes[1]))
    torch.manual_seed(0)
    model = GLIP(config).eval()
    with torch.no_grad():
        model.head.bias0.fill_(0.0)
    return save_glip(model, path)
