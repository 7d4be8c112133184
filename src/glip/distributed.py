"""Devices and processes: where a model runs, and the process group of a ``torchrun`` launch.

One behaviour for inference, evaluation and training:

- ``resolve_device(None)`` is CUDA when ``torch.cuda.is_available()``, else the CPU (never MPS
  unasked: some operators still fall back to the CPU there).
- Accepted devices: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (strings or ``torch.device``). Anything
  else (``"tpu"``, ``"gpu"``) is a ValueError of one line that lists these forms; asking for CUDA
  (or ``cuda:N``, or MPS) on a machine without it is a ValueError that says to use ``cpu``.
- A bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under ``torchrun`` (the ``LOCAL_RANK`` variable set),
  and the current CUDA device (``cuda:0`` unless changed) otherwise, so a resolved CUDA device
  always has an index. An explicit ``cuda:N`` is kept as it is.
- `init_distributed` joins the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) when ``WORLD_SIZE`` > 1: gloo on the CPU, nccl
  on CUDA. Without that environment it is one process and nothing is initialised.

`DistributedContext` is this process's place (rank of world size, device) and the collectives the
training and evaluation loops need; in a single process each of them is the identity, so the
loops have one code path.

Launch::

    torchrun --standalone --nproc_per_node 2 -m glip.training.train_cli config.yaml
    torchrun --standalone --nproc_per_node 2 -m glip.evaluation.cli --weights W --dataset D

Example:
    >>> context = init_distributed("cpu")
    >>> context.rank, context.world_size, context.device
    (0, 1, device(type='cpu'))
    >>> context.all_gather({"images": 3})
    [{'images': 3}]
    >>> context.close()
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

DEVICE_FORMS = "cpu, cuda, cuda:N or mps"


def _parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device of an accepted type, or a ValueError naming the accepted forms."""
    if isinstance(device, torch.device):
        parsed = device
    else:
        try:
            parsed = torch.device(str(device).strip().lower())
        except (RuntimeError, ValueError):
            parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device '{device}': use {DEVICE_FORMS}")
    return parsed


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on (see the module docstring for the rules).

    Args:
        device: ``None`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"`` or a ``torch.device``.

    Raises:
        ValueError: an unknown device, or one this machine does not have.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = _parse_device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"'{device}' needs CUDA, but this machine has no usable CUDA device "
                             "(torch.cuda.is_available() is False): use cpu")
        count = torch.cuda.device_count()
        if resolved.index is None:
            local_rank = os.environ.get("LOCAL_RANK")
            index = int(local_rank) if local_rank is not None else torch.cuda.current_device()
            resolved = torch.device("cuda", index)
        if resolved.index >= count:
            raise ValueError(f"device {resolved} does not exist: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"'{device}' needs MPS, but this machine has no usable MPS device: use cpu")
    return resolved


def average_across_processes(value: float) -> float:
    """``value`` summed over the processes of the default group and divided by their number (the
    official loss normalisation); ``value`` itself outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        tensor = torch.tensor([value], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor)
        return float(tensor.item()) / dist.get_world_size()
    return value


def process_count() -> int:
    """The number of processes of the default group (1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_rows_across_processes(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every process's ``tensor`` (``[N_p, ...]``, ``N_p`` may differ) concatenated along dim 0 in
    rank order, and the row where this process's own part starts. This process's part is
    ``tensor`` itself, so gradients flow into it; the other parts are copies without history.
    Outside torchrun: ``(tensor, 0)``. Every process must call it (a collective)."""
    if process_count() == 1:
        return tensor, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))  # all_gather needs equal shapes
    padded[: tensor.shape[0]] = tensor.detach()
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    parts = [part[:count] for part, count in zip(gathered, counts)]
    parts[rank] = tensor
    return torch.cat(parts), sum(counts[:rank])


@dataclass
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes (1 without torchrun), its
    device, and the collectives of the loops (each one the identity in a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # this context created the process group (and destroys it on close)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, num_items: int) -> list[int]:
        """The item indices (e.g. batches) this process takes: ``rank``, ``rank + W``, ..."""
        return list(range(self.rank, num_items, self.world_size))

    def all_gather(self, value: Any) -> list[Any]:
        """Every process's picklable ``value``, in rank order (``[value]`` in a single process)."""
        if not self.is_distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        """Wait for every process (e.g. until the main one has written a file)."""
        if self.is_distributed:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (keeps processes stopping together)."""
        if not self.is_distributed:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over processes (e.g. the logged losses)."""
        if not self.is_distributed or not values:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``DistributedDataParallel`` around ``model`` when there are several processes, else ``model``."""
        if not self.is_distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                   find_unused_parameters=find_unused_parameters)

    def close(self) -> None:
        """Leave the process group if this context created it."""
        if self.owns_group and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False


def init_distributed(device: str | torch.device | None = None, timeout_minutes: float = 30.0) -> DistributedContext:
    """This process's context: ``device`` resolved by `resolve_device`, and the process group of
    torchrun's environment joined when ``WORLD_SIZE`` > 1 (gloo on the CPU, nccl on CUDA; an
    existing group is used as it is). Call ``close()`` when done."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size <= 1:
        return DistributedContext(device=resolved)
    if resolved.type == "mps":
        raise ValueError("several processes need device cpu or cuda (there is no MPS process group)")
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
        owns = True
        logger.info("process %d of %d joined the %s process group on %s", rank, world_size, backend, resolved)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              device=resolved, owns_group=owns)
