"""Distributed data-parallel training: process-group set-up from ``torchrun``, the resumable sharded
sampler, DDP wrapping and small collective helpers.

Launch::

    torchrun --standalone --nproc_per_node 2 -m glip.training.train_cli config.yaml

Every process runs the same loop on its own shard of one global order; DDP averages gradients.
GLIPLoss divides by the number of positives averaged over processes (official normalisation), so
the averaged gradient equals that of one process holding the whole global batch.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size``, its device, whether it is the main one."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | None, local_rank: int = 0) -> torch.device:
    """None = CUDA when available, else CPU; a bare "cuda" becomes ``cuda:LOCAL_RANK``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device is cuda but this machine has no usable CUDA device; use train.device=cpu")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    return resolved


def init_distributed(device: str | None = None, timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT): gloo on the CPU, nccl on CUDA. Without that environment: one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not (dist.is_available() and dist.is_initialized()):
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
        logger.info("process %d of %d joined the %s process group on %s", rank, world_size, backend, resolved)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_objects(value: Any) -> list[Any]:
    """One picklable value from every process, in rank order (just ``[value]`` without DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def any_process(flag: bool, device: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (keeps processes stopping together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def average_across_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each value over processes (for logging)."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: float(v) / dist.get_world_size() for k, v in zip(keys, tensor.tolist())}


def wrap_ddp(model: nn.Module, context: DistributedContext, find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several processes, else ``model``."""
    if not context.is_distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=find_unused_parameters)


class ResumableShardedSampler(Sampler[int]):
    """The sample order of one epoch, a function of ``(seed, epoch)`` only, sharded by rank and able
    to start from a position.

    The global order is a permutation of the dataset (or the identity with ``shuffle=False``). The
    first ``start`` entries of it are skipped (already consumed, counted over all processes); the
    rest is dealt out round-robin: process ``r`` takes entries ``start + r``, ``start + r + W``, ...
    After each process has taken ``k`` samples, the processes together have consumed exactly the
    first ``start + k * W`` entries, so the position is one global number whatever the number of
    processes, and a run can resume with another world size. Every process gets the same count
    (the tail that does not divide evenly is dropped).
    """

    def __init__(self, dataset_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True) -> None:
        if dataset_size <= 0:
            raise ValueError("the training data is empty")
        self.dataset_size = dataset_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch, and the global position within it to start from."""
        if not 0 <= start <= self.dataset_size:
            raise ValueError(f"data position {start} is outside an epoch of {self.dataset_size} samples")
        self.epoch = epoch
        self.start = start

    def order(self) -> list[int]:
        """The global order of the current epoch (all processes)."""
        if not self.shuffle:
            return list(range(self.dataset_size))
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def __len__(self) -> int:
        return (self.dataset_size - self.start) // self.world_size

    def __iter__(self) -> Iterator[int]:
        remaining = self.order()[self.start:]
        count = len(self)
        return iter(remaining[self.rank::self.world_size][:count])
