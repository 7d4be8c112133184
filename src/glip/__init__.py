"""glip: GLIP (Grounded Language-Image Pre-training) in pure PyTorch."""

from glip.config import GLIPConfig, get_config
from glip.modeling.glip import GLIP

__version__ = "0.1.0"

__all__ = ["GLIP", "GLIPConfig", "GLIPPredictor", "get_config", "__version__"]


def __getattr__(name: str):
    # The predictor pulls in image and tokenizer code; import it lazily.
    if name == "GLIPPredictor":
        from glip.predictor import GLIPPredictor

        return GLIPPredictor
    raise AttributeError(f"module 'glip' has no attribute {name!r}")
