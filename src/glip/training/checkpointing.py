"""Training checkpoints: one ``step_{N:08d}.pt`` file per save, written so that no crash loses work.

A file is written to ``step_N.pt.tmp``, flushed and fsync-ed, renamed over its final name (an atomic
step on POSIX and Windows), and the directory is fsync-ed; a reader therefore sees either nothing or
a whole checkpoint. Only the last ``keep_last`` are kept. The newest is found by scanning names, so
a leftover ``.tmp`` from a killed run is ignored (and removed on the next save).

A checkpoint holds what is needed to continue exactly and no more: the model's parameters and
buffers, optimizer, scheduler, EMA, grad scaler, step, epoch, data position, the RNG states of
Python, NumPy and torch, and the config. Frozen parameters whose values come from a source the
config names (``model.weights``, ``model.init_from``, a pretrained text encoder) are left out of the
model and EMA weights, since building the model again gives them back; the checkpoint keeps their
names, that source and a SHA-256 of their exact bytes (`frozen_record`), and a resume or an export
checks the rebuilt values against it (`restore_weights`). The optimizer never holds frozen
parameters. For inference, export with ``glip convert CHECKPOINT OUT.safetensors``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
from pathlib import Path
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from glip.checkpoint import load_state_strict, shorten_names
from glip.files import stale_temporaries, write_atomically

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8,})\.pt$")
TRAINING_FORMAT = "glip-train"  # the "format" entry of every training checkpoint


def is_training_checkpoint(state: object) -> bool:
    return isinstance(state, dict) and state.get("format") == TRAINING_FORMAT


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of the complete checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def atomic_save(payload: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, flushed to disk, then renamed over ``path``."""
    return write_atomically(path, lambda temporary: torch.save(payload, temporary), durable=True)


def save_checkpoint(directory: str | os.PathLike, step: int, payload: dict[str, Any], keep_last: int) -> Path:
    """Write ``step_{step:08d}.pt`` atomically, then delete all but the newest ``keep_last``
    checkpoints and any stale temporary files."""
    directory = Path(directory)
    path = atomic_save(payload, directory / checkpoint_name(step))
    for _, old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
    for stale in [*stale_temporaries(directory, "step_*.pt"), *directory.glob("step_*.pt.tmp")]:
        stale.unlink(missing_ok=True)  # left by a killed run (the second form: written by older versions)
    logger.info("saved checkpoint %s", path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint (tensors to CPU; only plain data is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ValueError(f"{path} is not a readable training checkpoint ({type(error).__name__}: "
                         f"{str(error).splitlines()[0][:200]})") from error


def rng_state() -> dict[str, Any]:
    """The global RNG states of Python, NumPy, torch (CPU and every CUDA device), as plain data."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class FrozenWeightsMismatch(ValueError):
    """The frozen parameters a checkpoint left out are not what the rebuilt model holds."""


def fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of ``tensors``: names, dtypes, shapes and exact bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def frozen_record(model: nn.Module, names: Iterable[str], sources: str) -> dict[str, Any]:
    """What a checkpoint keeps of the parameters it leaves out: their names, where building the
    model takes them from, and the fingerprint of their current values."""
    names = sorted(names)
    parameters = dict(model.named_parameters())
    return {"names": names, "sources": sources, "sha256": fingerprint({n: parameters[n] for n in names})}


def stored_weights(model: nn.Module, record: Mapping[str, Any] | None) -> OrderedDict[str, torch.Tensor]:
    """``model``'s state dict without the parameters ``record`` leaves out."""
    left_out = set(record["names"]) if record else set()
    state = model.state_dict()
    stored = OrderedDict((name, value) for name, value in state.items() if name not in left_out)
    stored._metadata = getattr(state, "_metadata", None)  # module versions, as load_state_dict expects
    return stored


def restore_weights(model: nn.Module, weights: Mapping[str, torch.Tensor], record: Mapping[str, Any] | None,
                    where: str) -> None:
    """Load a checkpoint's ``weights`` into ``model``, whose left-out frozen parameters (``record``,
    None for a checkpoint that stores everything) must already hold the values they had when the
    checkpoint was written: FrozenWeightsMismatch otherwise. ``where`` names the checkpoint."""
    state = OrderedDict(weights)
    state._metadata = getattr(weights, "_metadata", None)
    if record:
        parameters = dict(model.named_parameters())
        missing = [name for name in record["names"] if name not in parameters]
        if missing:
            raise FrozenWeightsMismatch(
                f"{where} leaves out frozen parameters this model does not have ({shorten_names(missing, 4)}): "
                "build the model from the same model.config")
        current = fingerprint({name: parameters[name] for name in record["names"]})
        if current != record["sha256"]:
            raise FrozenWeightsMismatch(
                f"{where} does not store its {len(record['names'])} frozen parameters "
                f"({shorten_names(record['names'], 3)}): they come from {record['sources']}, "
                f"which now gives other values (SHA-256 {current[:12]} instead of {record['sha256'][:12]}); "
                "rebuild from the same source")
        state.update({name: parameters[name].detach() for name in record["names"]})
    load_state_strict(model, state)
