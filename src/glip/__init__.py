"""glip: GLIP (Grounded Language-Image Pre-training) in pure PyTorch.

The names below are imported on first use, so that ``import glip`` (and the ``glip`` command's
``--help`` and argument errors) does not load torch, torchvision and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from glip.lazy_exports import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
