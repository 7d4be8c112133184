"""A training checkpoint (``step_N.pt`` of ``glip train``) as a model file (our ``.safetensors`` and
its ``.json``), e.g. to use a model before its run has finished: ``glip convert``.

The model is built again from the checkpoint's config; frozen parameters the checkpoint leaves out
come from the sources that config names (``model.weights``, ``model.init_from``, the pretrained text
encoder) and are checked against the checkpoint's fingerprint of them.

Example:
    >>> export_training_checkpoint("runs/x/checkpoints/step_00000800.pt", "x.safetensors",
    ...                            dtype=torch.float16)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from glip.checkpoint import save_glip
from glip.training import checkpointing
from glip.training.starting_model import build_model
from glip.training.train_config import ModelSection, TrainConfig

logger = logging.getLogger(__name__)

def export_training_checkpoint(checkpoint: str | Path, output: str | Path, use_ema: bool | None = None,
                               dtype: torch.dtype | None = None) -> Path:
    """Write the weights of a training checkpoint in our model format; returns the output path.

    Args:
        checkpoint: a ``step_N.pt`` written by the trainer.
        output: the ``.safetensors`` file to write (its ``.json`` config beside it).
        use_ema: the EMA weights (True), the trained weights (False), or the EMA ones when the run
            kept an EMA (None).
        dtype: the stored floating-point type (e.g. ``torch.float16`` for a smaller file); None
            keeps the model's.
    """
    checkpoint = Path(checkpoint)
    state = checkpointing.load_checkpoint(checkpoint)
    if not checkpointing.is_training_checkpoint(state):
        raise ValueError(f"{checkpoint} is not a glip training checkpoint "
                         f"(no format '{checkpointing.TRAINING_FORMAT}')")
    if use_ema and not state.get("ema"):
        raise ValueError(f"{checkpoint} has no EMA weights (its run had train.ema_decay=null): export without EMA")
    ema = bool(state.get("ema")) if use_ema is None else use_ema
    record = state.get("frozen")
    section = TrainConfig.from_dict(state["config"]).model
    if not record:
        # Every tensor is stored: the initial weights are not needed (nor need they still exist).
        section = ModelSection(config=section.config, overrides=section.overrides)
    model = build_model(section).model
    weights = state["ema"]["weights"] if ema else state["model"]
    checkpointing.restore_weights(model, weights, record, str(checkpoint))
    metadata = {"source": f"training checkpoint {checkpoint.name}", "step": str(state["step"]),
                "weights": "ema" if ema else "model"}
    path = save_glip(model, output, metadata, dtype=dtype)
    logger.info("%s (step %s, %s weights) -> %s", checkpoint, state["step"], metadata["weights"], path)
    return path
