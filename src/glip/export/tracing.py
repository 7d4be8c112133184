"""Putting a model in the form the ONNX tracer can export, for the duration of an export.

Three things change, all restored afterwards, whatever happens:

* the DyHead's deformable convs run by the "sampled" method of `glip.modeling.deform_conv` (one
  ``grid_sample`` per band of output rows + a matmul, ONNX ``GridSample``, opset 16 or later):
  torchvision's ``deform_conv2d`` has no ONNX symbolic, and onnxruntime runs ONNX's ``DeformConv``
  (opset 19) only since 2026 (microsoft/onnxruntime#27393);
* each Swin stage's shifted-window attention mask, which depends only on the feature size, is
  computed eagerly once and handed to the tracer as a constant. Traced, the mask's construction
  (slice assignments into a region map) comes out of the TorchScript exporter with wrong shapes,
  and onnxruntime refuses the graph ("Incompatible dimensions" at the mask's Add);
* ``torch.nn.functional.adaptive_avg_pool2d`` (the head's alignment skips pool the first Swin
  stage to every level) becomes two matmuls with constant bin-averaging matrices, because the
  exporter has no adaptive pooling to sizes that do not divide the input (P7 of a 320 px input).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from glip.modeling.dyhead import DeformConvNorm

MASK_METHOD = "shifted_window_mask"


@contextmanager
def sampled_deform_convs(model: nn.Module) -> Iterator[int]:
    """Every `DeformConvNorm` of ``model`` set to ``method="sampled"`` for the duration (its own
    method back afterwards, even on error). Yields the number of convs."""
    convs = [module for module in model.modules() if isinstance(module, DeformConvNorm)]
    methods = [conv.method for conv in convs]
    try:
        for conv in convs:
            conv.method = "sampled"
        yield len(convs)
    finally:
        for conv, method in zip(convs, methods):
            conv.method = method


def _cached(method: Callable[[int, int, torch.device], torch.Tensor]) -> Callable:
    """``method`` with its results kept per (h, w, device): later calls return the stored tensor."""
    masks: dict[tuple, torch.Tensor] = {}

    def mask(h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (int(h), int(w), str(device))
        if key not in masks:
            masks[key] = method(int(h), int(w), device).detach()
        return masks[key]

    return mask


@contextmanager
def constant_window_masks(model: nn.Module) -> Iterator[int]:
    """Every Swin stage's ``shifted_window_mask`` cached per size for the duration (run the model
    once eagerly inside, so that the traced run finds them). Yields the number of stages."""
    stages = [module for module in model.modules() if callable(getattr(module, MASK_METHOD, None))]
    try:
        for stage in stages:
            stage.__dict__[MASK_METHOD] = _cached(getattr(stage, MASK_METHOD))
        yield len(stages)
    finally:
        for stage in stages:
            stage.__dict__.pop(MASK_METHOD, None)


def bin_average_matrix(size_in: int, size_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[size_out, size_in]: row i averages adaptive pooling's bin i, [floor(i*n/m), ceil((i+1)*n/m))."""
    matrix = np.zeros((size_out, size_in), dtype=np.float64)  # built outside torch: a constant to the tracer
    for index in range(size_out):
        start, end = (index * size_in) // size_out, -(-((index + 1) * size_in) // size_out)
        matrix[index, start:end] = 1.0 / (end - start)
    return torch.from_numpy(matrix).to(dtype=dtype, device=device)


def matmul_adaptive_avg_pool2d(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` of x [..., H, W] as matmuls (same bins, float rounding aside)."""
    height, width = x.shape[-2:]
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    out_h, out_w = int(height if size[0] is None else size[0]), int(width if size[1] is None else size[1])
    rows = bin_average_matrix(int(height), out_h, x.dtype, x.device)  # [h, H]
    cols = bin_average_matrix(int(width), out_w, x.dtype, x.device)  # [w, W]
    return torch.matmul(torch.matmul(rows, x), cols.t())  # [..., h, W] -> [..., h, w]


@contextmanager
def matmul_adaptive_pooling() -> Iterator[None]:
    """``torch.nn.functional.adaptive_avg_pool2d`` replaced by `matmul_adaptive_avg_pool2d` for the duration."""
    original = F.adaptive_avg_pool2d
    F.adaptive_avg_pool2d = matmul_adaptive_avg_pool2d
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


@contextmanager
def traceable(model: nn.Module, example: torch.Tensor) -> Iterator[None]:
    """``model`` ready to be traced on inputs of ``example``'s shape (see the module docstring)."""
    with ExitStack() as stack:
        stack.enter_context(sampled_deform_convs(model))
        stack.enter_context(constant_window_masks(model))
        stack.enter_context(matmul_adaptive_pooling())
        with torch.no_grad():
            model(example)  # eager: computes the window masks of this input size outside the trace
        yield
