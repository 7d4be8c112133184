"""What each transfer mode trains.

- ``prompt``: only the prompt embedding (a zero-initialised ``[max_length, D]`` tensor added to the
  text features before fusion, the official prompt-tuning scheme); the whole model stays frozen.
- ``linear``: only the last, linear layers of the head: box regression, centerness and the
  region-word alignment (text projection, language bias, logit scale and bias, level scales).
- ``full``: everything; the language backbone at its own (lower) learning rate.
"""

from __future__ import annotations

from torch import nn

MODES = ("prompt", "linear", "full")

# Parameter names (whole name parts) a linear probe trains.
LINEAR_PROBE_PREFIXES = (
    "head.box_regression", "head.centerness", "head.scales",
    "head.text_projection", "head.bias_lang", "head.bias0", "head.log_scale",
)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def trainable_names(model: nn.Module, mode: str) -> list[str]:
    """The names of the parameters ``mode`` trains (the prompt embedding must exist for ``prompt``)."""
    if mode not in MODES:
        raise ValueError(f"unknown transfer mode '{mode}': use one of {', '.join(MODES)}")
    names = [name for name, _ in model.named_parameters()]
    if mode == "full":
        return names
    prefixes = ("prompt_embedding",) if mode == "prompt" else LINEAR_PROBE_PREFIXES
    chosen = [name for name in names if any(_matches(name, p) for p in prefixes)]
    if not chosen:
        raise ValueError(f"mode '{mode}' finds nothing to train in this model (expected {', '.join(prefixes)})")
    return chosen


def frozen_prefixes(model: nn.Module, mode: str) -> list[str]:
    """Parameter names to freeze so that only `trainable_names` train (for ``train.freeze``)."""
    keep = set(trainable_names(model, mode))
    return [name for name, _ in model.named_parameters() if name not in keep]
