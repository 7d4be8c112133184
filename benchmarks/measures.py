"""What ``benchmarks/latency.py`` measures besides time: FLOPs, the machine's matmul rate, peak memory.

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add of every matrix
  product, convolution and attention kernel; elementwise ops, normalisations, ``grid_sample`` and
  the like count 0) plus the deformable convolutions, which it has no formula for: GLIP's DyHead
  convs are switched to ``torchvision.ops.deform_conv2d`` for the counting call and that op is given
  `deform_conv_flops`, so the count is the same on every device (the CPU's "sampled" formulation
  would otherwise be seen as a matrix product and torchvision's op on a GPU not at all).
* the matmul rate: float32 ``torch.mm`` of two ``size x size`` matrices, 2 x size^3 FLOPs a call.
* peak memory: ``ru_maxrss`` of the calling process (the resident set's high-water mark since the
  process started), and its resident set now from ``/proc/self/statm``.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

DEFORM_CONV_OP = torch.ops.torchvision.deform_conv2d  # FlopCounterMode keys its formulas by op packet


def deform_conv_flops(input_shape: Sequence[int], weight_shape: Sequence[int], *args, out_shape: Sequence[int],
                      **kwargs) -> int:
    """FLOPs of ``torchvision.ops.deform_conv2d`` (shapes as FlopCounterMode passes them).

    At each output position and output channel, one multiply-add per input channel of the weight's
    group and kernel tap: ``2 x B x Cout x Ho x Wo x (Cin / groups) x kh x kw``, as the counter
    counts an ordinary convolution. The bilinear sampling and the modulation mask are elementwise
    and count 0, like every elementwise op; the offset/mask conv is an ordinary conv, counted by the
    counter itself.
    """
    batch, out_channels, out_h, out_w = out_shape
    _, in_per_group, kernel_h, kernel_w = weight_shape
    return 2 * batch * out_channels * out_h * out_w * in_per_group * kernel_h * kernel_w


@dataclass
class FlopCount:
    """FLOPs (2 per multiply-add) of one call."""

    total: int  # deformable convs included
    deform_conv: int  # of which the deformable convs (`deform_conv_flops`)


@contextmanager
def torchvision_deform_convs(models: Sequence[nn.Module]) -> Iterator[None]:
    """Every GLIP DyHead deformable conv of ``models`` runs torchvision's op for the duration."""
    from glip.modeling.dyhead import DeformConvNorm

    convs = [m for model in models for m in model.modules() if isinstance(m, DeformConvNorm)]
    methods = [conv.method for conv in convs]
    for conv in convs:
        conv.method = "torchvision"
    try:
        yield
    finally:
        for conv, method in zip(convs, methods):
            conv.method = method


def count_flops(call: Callable[[], object], models: Sequence[nn.Module] = ()) -> FlopCount:
    """FLOPs of ``call()``, deformable convs included (see the module docstring); ``models``: the
    modules whose GLIP deformable convs ``call`` runs."""
    with torchvision_deform_convs(models), FlopCounterMode(
            display=False, custom_mapping={DEFORM_CONV_OP: deform_conv_flops}) as counter:
        call()
    deform = counter.get_flop_counts().get("Global", {}).get(DEFORM_CONV_OP, 0)
    return FlopCount(total=counter.get_total_flops(), deform_conv=deform)


@dataclass
class MatmulRate:
    """Seconds of each timed float32 ``torch.mm`` of two ``size x size`` matrices."""

    size: int
    seconds: list[float]

    @property
    def flops_per_second(self) -> float:
        """At the median time."""
        return 2 * self.size**3 / statistics.median(self.seconds)


def measure_matmul_rate(size: int, repeats: int, device: torch.device) -> MatmulRate:
    """Time ``repeats`` float32 ``torch.mm`` calls (after one untimed) on ``device``."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    seconds = []
    for index in range(repeats + 1):
        _synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        _synchronize(device)
        if index > 0:
            seconds.append(time.perf_counter() - started)
    return MatmulRate(size, seconds)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_bytes() -> int:
    """The resident set's high-water mark of this process since it started (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def current_rss_bytes() -> int | None:
    """This process's resident set now, or None where ``/proc/self/statm`` does not exist."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * resource.getpagesize()
