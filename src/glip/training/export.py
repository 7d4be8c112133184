"""A training checkpoint (``step_N.pt`` of ``glip train``) as a model file (our ``.safetensors`` and
its ``.json``), e.g. to use a model before its run has finished: ``glip convert``.

The model is built again from the checkpoint's config; frozen parameters the checkpoint leaves out
come from the sources that config names (``model.weights``, ``model.init_from``, the pretrained text
encoder) and are checked against the checkpoint's fingerprint of them.

GLIPv2's pre-training heads (inter-image projections, MLM head: `glip.modeling.pretraining_heads`)
serve training losses only, so the exported model leaves them out by default (its config without
the ``pretraining`` section: a model for inference, as small as the detector);
``keep_pretraining_heads=True`` keeps them, for continued pre-training from the file. The mask
head is part of inference and always kept. (The final ``model.safetensors`` of a run keeps
everything the run trained.)

Example:
    >>> export_training_checkpoint("runs/x/checkpoints/step_00000800.pt", "x.safetensors",
    ...                            dtype=torch.float16)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from glip.checkpoint import save_glip
from glip.config import PretrainingConfig
from glip.modeling.glip import GLIP
from glip.training import checkpointing
from glip.training.starting_model import build_model
from glip.training.train_config import ModelSection, TrainConfig

logger = logging.getLogger(__name__)

def drop_pretraining_heads(model: GLIP) -> GLIP:
    """``model`` without its pre-training heads, in place: the modules and their config section go,
    so that the model saves, loads and runs as one built without them (the detector is untouched)."""
    if model.pretraining_heads is not None:
        model.pretraining_heads = None
        model.config = dataclasses.replace(model.config, pretraining=PretrainingConfig())
    return model


def export_training_checkpoint(checkpoint: str | Path, output: str | Path, use_ema: bool | None = None,
                               dtype: torch.dtype | None = None, keep_pretraining_heads: bool = False) -> Path:
    """Write the weights of a training checkpoint in our model format; returns the output path.

    Args:
        checkpoint: a ``step_N.pt`` written by the trainer.
        output: the ``.safetensors`` file to write (its ``.json`` config beside it).
        use_ema: the EMA weights (True), the trained weights (False), or the EMA ones when the run
            kept an EMA (None).
        dtype: the stored floating-point type (e.g. ``torch.float16`` for a smaller file); None
            keeps the model's.
        keep_pretraining_heads: keep GLIPv2's training-only pre-training heads (for continued
            pre-training); by default they are left out (see the module docstring).
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
    if model.pretraining_heads is not None and not keep_pretraining_heads:
        drop_pretraining_heads(model)
        metadata["pretraining_heads"] = "left out (training only)"
    path = save_glip(model, output, metadata, dtype=dtype)
    logger.info("%s (step %s, %s weights) -> %s", checkpoint, state["step"], metadata["weights"], path)
    return path
