"""The embedded default model shipped inside the package (``glip/weights/``)."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_NAME = "glip-nano.safetensors"


def default_weights() -> Path:
    """Path of the embedded default checkpoint; a clear error while none is shipped."""
    path = WEIGHTS_DIR / DEFAULT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"this installation has no embedded default model ({path} is missing): pass weights explicitly, "
            "e.g. --weights glip_tiny_model_o365_goldg.pth or a checkpoint built with "
            "tools/make_reference_checkpoint.py"
        )
    return path
