"""Deterministic synthetic weights in the official format, and reading golden reference cases.

The golden data (``tests/golden`` in the repository) was produced by the official model with weights
built by a documented rule: one generator per state-dict key, seeded with crc32("<seed>:<key>"), then
``randn * 0.02`` (``1 + 0.1 * randn`` for normalisation weights, ``1 + rand`` for running vars),
except a few integer/constant buffers stored in ``nonfloat_buffers.npz``. This module rebuilds that
state dict from a manifest so our model can be compared with the official one.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

NONPERSISTENT_PREFIX = "nonpersistent::"
_DTYPES = {"float32": torch.float32, "int64": torch.int64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def rule_tensor(seed: int, key: str, shape: list[int], rule: str) -> torch.Tensor:
    """The generated value of one float entry."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{key}".encode()))
    if key.endswith("running_var"):
        return 1 + torch.rand(shape, generator=generator, dtype=torch.float32)
    if rule == "norm_weight":
        return 1 + 0.1 * torch.randn(shape, generator=generator, dtype=torch.float32)
    return torch.randn(shape, generator=generator, dtype=torch.float32) * 0.02


def find_manifest(case_dir: Path, model: str) -> Path:
    """``manifest_<model>.json`` in the case directory or its parent."""
    name = f"manifest_{model.replace('-', '_')}.json"
    for directory in (case_dir, case_dir.parent):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no {name} in {case_dir} or {case_dir.parent}")


def find_buffers(case_dir: Path) -> Path:
    for directory in (case_dir, case_dir.parent):
        if (directory / "nonfloat_buffers.npz").is_file():
            return directory / "nonfloat_buffers.npz"
    raise FileNotFoundError(f"no nonfloat_buffers.npz in {case_dir} or {case_dir.parent}")


def build_official_state_dict(manifest_path: Path, buffers_path: Path, seed: int,
                              include_legacy_extras: bool = True) -> dict[str, torch.Tensor]:
    """The official-named state dict of the manifest, by the rule. With ``include_legacy_extras``
    the BERT ``position_ids`` buffer that GLIP-era checkpoints carry is added, as in real files."""
    manifest = json.loads(Path(manifest_path).read_text())
    buffers = np.load(buffers_path)
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype, rule in manifest["entries"]:
        if rule in ("keep_nonfloat", "keep_float_constant"):
            if key not in buffers:
                raise KeyError(f"{key} is kept at its official value but absent from {buffers_path}")
            value = torch.from_numpy(np.array(buffers[key]))
        else:
            value = rule_tensor(seed, key, shape, rule)
        if list(value.shape) != list(shape) or value.dtype != _DTYPES[dtype]:
            raise ValueError(f"{key}: built {tuple(value.shape)} {value.dtype}, manifest says {shape} {dtype}")
        state[key] = value
    if include_legacy_extras:
        for name in buffers.files:
            if name.startswith(NONPERSISTENT_PREFIX) and name.endswith("position_ids"):
                state[name[len(NONPERSISTENT_PREFIX):]] = torch.from_numpy(np.array(buffers[name]))
    return state


def write_official_checkpoint(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Save as the official trainer does: ``{"model": {"module." + key: ...}, ...}``."""
    checkpoint = {
        "model": {f"module.{k}": v for k, v in state.items()},
        "optimizer": {},
        "scheduler": {"last_epoch": 0},
        "iteration": 0,
    }
    torch.save(checkpoint, path)
    return path


class SampledTensor:
    """A tensor stored in a case file as flat indices + values (plus shape/mean/std)."""

    def __init__(self, arrays: np.lib.npyio.NpzFile, name: str) -> None:
        self.name = name
        self.shape = tuple(int(x) for x in arrays[f"{name}__shape"])
        self.indices = np.asarray(arrays[f"{name}__idx"], dtype=np.int64)
        self.values = np.asarray(arrays[f"{name}__val"])

    def take(self, tensor: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(tensor).reshape(-1)[self.indices]


@dataclass
class ReferenceCase:
    """One case directory: meta.json, image.png, inference.npz."""

    directory: Path
    meta: dict
    arrays: np.lib.npyio.NpzFile

    @classmethod
    def open(cls, directory: str | Path) -> "ReferenceCase":
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text())
        return cls(directory=directory, meta=meta, arrays=np.load(directory / "inference.npz"))

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def seed(self) -> int:
        return int(self.meta["seed"])

    @property
    def image_path(self) -> Path:
        return self.directory / "image.png"

    @property
    def phrase_spans(self) -> list[tuple[int, int]]:
        return [tuple(p["char_span"]) for p in self.meta["phrases"]]

    def has(self, name: str) -> bool:
        return name in self.arrays.files or f"{name}__idx" in self.arrays.files

    def full(self, name: str) -> np.ndarray:
        return np.asarray(self.arrays[name])

    def sampled(self, name: str) -> SampledTensor:
        return SampledTensor(self.arrays, name)
