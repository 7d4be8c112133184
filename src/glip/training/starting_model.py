"""The model a run starts from: its config (a preset or a config JSON, with ``model.overrides``
merged in), built once, with its initial weights from the sources the config names.

Sources, each read once:

- ``model.weights``: a checkpoint of this very architecture (our .safetensors or an official
  .pth), loaded strictly into the one model built for it;
- ``model.init_from``: a checkpoint of a related architecture, every tensor the two share by name
  and shape copied;
- ``model.overrides``/the preset's ``text.pretrained`` (e.g. ``minilm``): the text encoder's
  pretrained weights, loaded by the text encoder itself.

`StartingModel.sourced` names the parameters whose values came from one of these sources: a
training checkpoint leaves out those that are also frozen (building the model again gives them
back) and keeps a fingerprint of them instead (see `glip.training.checkpointing`).

Example:
    >>> start = build_model(ModelSection(config="glip-nano", weights="runs/stage1.safetensors"))  # doctest: +SKIP
    >>> start.sources  # doctest: +SKIP
    'model.weights=runs/stage1.safetensors'
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glip.checkpoint import load_glip, load_official, load_shared_state, shorten_names
from glip.config import GLIPConfig, get_config
from glip.modeling.glip import GLIP
from glip.training.train_config import ModelSection

logger = logging.getLogger(__name__)

TEXT_ENCODER_PREFIX = "text_encoder."


@dataclass
class StartingModel:
    """A freshly built model and where its initial values came from."""

    model: GLIP
    sourced: frozenset[str]  # parameter names whose values a named source gave (the rest: random init)
    sources: str  # the sources, as the config names them (e.g. "text.pretrained=minilm"); "" = none


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_model_config(section: ModelSection) -> GLIPConfig:
    """A preset or a config JSON file, with ``section.overrides`` merged in."""
    path = Path(section.config)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"model.config: {path} does not exist")
        data = json.loads(path.read_text())
    else:
        data = get_config(section.config).to_dict()
    return GLIPConfig.from_dict(_merge(data, section.overrides))


def build_model(section: ModelSection) -> StartingModel:
    """The model of ``section``: built from its config once, with ``section.weights`` (our
    .safetensors or an official .pth; the architecture must match) or ``section.init_from`` loaded."""
    config = build_model_config(section)
    sources = [f"model.weights={section.weights}"] if section.weights else []
    if section.weights:
        path = Path(section.weights)
        model = load_glip(path, config) if path.suffix == ".safetensors" else load_official(path, config)
        logger.info("initial weights from %s", path)
    else:
        model = GLIP(config)
    names = [name for name, _ in model.named_parameters()]
    sourced = set(names) if section.weights else set()
    if config.text.pretrained is not None:
        sources.append(f"text.pretrained={config.text.pretrained}")
        sourced.update(name for name in names if name.startswith(TEXT_ENCODER_PREFIX))
    if section.init_from:
        shared = load_shared_state(model, load_glip(section.init_from).state_dict())
        sourced.update(set(shared.copied) & set(names))
        sources.insert(0, f"model.init_from={section.init_from}")
        logger.info("initial weights from %s: %d tensors copied; %d of this model kept their initialisation "
                    "(%s); %d of the checkpoint unused (%s)", section.init_from, len(shared.copied),
                    len(shared.kept), shorten_names(shared.kept, 6), len(shared.unused),
                    shorten_names(shared.unused, 6))
    return StartingModel(model, frozenset(sourced), ", ".join(sources))
