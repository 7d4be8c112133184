"""Training checkpoints: one ``step_{N:08d}.pt`` file per save, written so that no crash loses work.

A file is written to ``step_N.pt.tmp``, flushed and fsync-ed, renamed over its final name (an atomic
step on POSIX and Windows), and the directory is fsync-ed; a reader therefore sees either nothing or
a whole checkpoint. Only the last ``keep_last`` are kept. The newest is found by scanning names, so
a leftover ``.tmp`` from a killed run is ignored (and removed on the next save).

A checkpoint holds everything needed to continue exactly: model, optimizer, scheduler, EMA, grad
scaler, step, epoch, data position, the RNG states of Python, NumPy and torch, and the config.
These are final models for nobody: export with :func:`glip.checkpoint.save_glip` for inference.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8,})\.pt$")


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


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; the rename is durable enough there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_save(payload: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path.tmp``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)
    return path


def save_checkpoint(directory: str | os.PathLike, step: int, payload: dict[str, Any], keep_last: int) -> Path:
    """Write ``step_{step:08d}.pt`` atomically, then delete all but the newest ``keep_last``
    checkpoints and any stale temporary files."""
    directory = Path(directory)
    path = atomic_save(payload, directory / checkpoint_name(step))
    for _, old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
    for stale in directory.glob("step_*.pt.tmp"):
        stale.unlink(missing_ok=True)
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
