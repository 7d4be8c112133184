"""Exponential moving average of model weights (official GLIP: ``SOLVER.MODEL_EMA`` 0.999).

After every optimizer step, ``ema = decay * ema + (1 - decay) * weights`` for every floating-point
tensor of the state dict (trainable parameters and buffers); frozen parameters and other buffers
are copied. The EMA copy is a
whole module in eval mode, so it can be evaluated or exported as it is.

Example:
    >>> ema = ModelEMA(model, decay=0.999)  # doctest: +SKIP
    >>> optimizer.step(); ema.update(model)  # doctest: +SKIP
    >>> save_glip(ema.module, "model.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call after each optimizer step)."""
        current = model.state_dict()
        # Frozen parameters are copied, not averaged: averaging equal values still drifts by rounding.
        frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.dtype.is_floating_point and name not in frozen:
                average.mul_(self.decay).add_(value.to(average.dtype), alpha=1.0 - self.decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.decay = float(state["decay"])
        self.module.load_state_dict(state["weights"])
