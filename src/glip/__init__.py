"""glip: GLIP (Grounded Language-Image Pre-training) in pure PyTorch.

The names below are imported on first use, so that ``import glip`` (and the ``glip`` command's
``--help`` and argument errors) does not load torch, torchvision and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it.
_LAZY = {
    "GLIP": "glip.modeling.glip",
    "GLIPConfig": "glip.config",
    "GLIPPredictor": "glip.predictor",
    "get_config": "glip.config",
}

__all__ = ["GLIP", "GLIPConfig", "GLIPPredictor", "get_config", "__version__"]

if TYPE_CHECKING:
    from glip.config import GLIPConfig, get_config
    from glip.modeling.glip import GLIP
    from glip.predictor import GLIPPredictor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'glip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
