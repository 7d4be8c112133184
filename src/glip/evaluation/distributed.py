"""Multi-process evaluation under ``torchrun``: which images a process runs, and gathering results.

Launch::

    torchrun --standalone --nproc_per_node 2 -m glip.evaluation.cli --weights W --dataset D

Images are cut into batches in dataset order (as one process would), and batch ``b`` goes to
rank ``b % world_size``: every batch holds the same images, padded the same way, as in a single
process, so the detections and the numbers are the same. Predictions are gathered to every rank
(``all_gather_object``: gloo on the CPU, nccl on CUDA), put back in dataset order, and rank 0
evaluates and writes the reports.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    """``rank`` of ``world_size`` processes (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this context created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, num_batches: int) -> list[int]:
        """The batch indices this process runs."""
        return list(range(self.rank, num_batches, self.world_size))

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
        if not self.is_distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def evaluation_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``None``: CUDA when available, else CPU. Under torchrun, a bare ``cuda`` is ``cuda:LOCAL_RANK``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        resolved = torch.device("cuda", local_rank)
    if resolved.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_device(resolved)
    return resolved


def init_distributed(device: torch.device, timeout_minutes: float = 30.0) -> DistributedContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size <= 1:
        return DistributedContext()
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
        owns = True
        logger.info("evaluation process %d of %d (%s)", rank, world_size, backend)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              owns_group=owns)
