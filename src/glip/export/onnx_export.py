"""Export a fixed-prompt detector to ONNX and check it with onnxruntime against PyTorch.

The graph is traced by ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``: it
needs no ``onnxscript`` and works offline), at a fixed input size. The DyHead's deformable convs
are exported by their "sampled" method (``GridSample`` + MatMul, `glip.modeling.deform_conv`;
torchvision's op has no ONNX symbolic, and few runtimes run ONNX's ``DeformConv``) and Swin's
window masks as constants (`glip.export.tracing`). The file's metadata holds an `ExportMetadata`
(phrases, sizes, post-processing settings) for `glip.export.runtime`.

Example:
    >>> chunks = predictor.build_prompts(classes=["star", "circle"])  # doctest: +SKIP
    >>> meta = export_onnx(predictor.model, chunks, "shapes.onnx", (320, 320))  # doctest: +SKIP
    >>> check_onnx("shapes.onnx", predictor.model, chunks, tensor)  # doctest: +SKIP
    {'boxes': 3.1e-05, 'scores': 1.2e-07, 'centerness': 6.0e-08}
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from glip.export.fixed_prompt import OUTPUT_NAMES, FixedPromptDetector
from glip.export.runtime import METADATA_KEY, ExportMetadata
from glip.export.tracing import traceable
from glip.files import write_atomically
from glip.modeling.glip import GLIP
from glip.prompts import PromptChunk

DEFAULT_OPSET = 17
MIN_OPSET = 16  # GridSample, the deformable convs' sampling
INPUT_NAME = "images"
ONNX_MISSING = 'ONNX export needs the onnx and onnxruntime packages: pip install "glip[onnx]"'


def require_onnx() -> None:
    """Raise a one-line ImportError naming the extra when onnx or onnxruntime is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ImportError(ONNX_MISSING) from None


def default_input_size(model: GLIP) -> tuple[int, int]:
    """A square of the model's shorter-side size, rounded up to its size divisibility."""
    config = model.config.input
    side = int(math.ceil(config.min_size / config.size_divisibility) * config.size_divisibility)
    return side, side


def export_metadata(detector: FixedPromptDetector, input_hw: tuple[int, int]) -> ExportMetadata:
    config = detector.model.config
    post = config.postprocess
    return ExportMetadata(
        model=config.name, phrases=list(detector.phrases), chunk_of_phrase=list(detector.chunk_of_phrase),
        input_height=input_hw[0], input_width=input_hw[1], level_sizes=detector.level_sizes(*input_hw),
        pixel_mean=list(config.input.pixel_mean), pixel_std=list(config.input.pixel_std),
        min_size=config.input.min_size, max_size=config.input.max_size,
        candidate_threshold=post.candidate_threshold, pre_nms_top_n=post.pre_nms_top_n,
        nms_threshold=post.nms_threshold, detections_per_image=post.detections_per_image,
        min_box_size=post.min_size)


def export_onnx(model: GLIP, chunks: Sequence[PromptChunk], path: str | os.PathLike, input_hw: tuple[int, int],
                opset: int = DEFAULT_OPSET) -> ExportMetadata:
    """Write ``model`` with the prompt ``chunks`` baked in as an ONNX file (replaced atomically).

    Args:
        model: the detector (with an adapter applied, if the prompt is a task's); it is moved to
            the CPU for the export and back to its device afterwards.
        input_hw: the graph's fixed input (height, width); multiples of the model's size divisibility.
        opset: the ONNX opset, 16 (``GridSample``) or later.

    Returns:
        The metadata stored in the file.
    """
    require_onnx()
    import onnx

    divisor = model.config.input.size_divisibility
    if any(side < divisor or side % divisor for side in input_hw):
        raise ValueError(f"the input size {input_hw[0]}x{input_hw[1]} must be multiples of {divisor}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} has no GridSample (the deformable convs'): use {MIN_OPSET} or later")
    device = model.head.bias_lang.device
    model.cpu()
    try:
        detector = FixedPromptDetector(model, chunks).eval()
        meta = export_metadata(detector, input_hw)
        example = torch.zeros(1, 3, *input_hw)

        def write(temporary: Path) -> None:
            with torch.no_grad(), traceable(detector, example):
                torch.onnx.export(detector, (example,), str(temporary), input_names=[INPUT_NAME],
                                  output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=False)
            graph = onnx.load(str(temporary))
            entry = graph.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, meta.to_json()
            onnx.save(graph, str(temporary))

        write_atomically(path, write)
    finally:
        model.to(device)
    return meta


def run_onnx(path: str | os.PathLike, images: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's outputs on ``images`` [1, 3, H, W] float32, with onnxruntime on the CPU."""
    require_onnx()
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})))


@torch.no_grad()
def check_onnx(path: str | os.PathLike, model: GLIP, chunks: Sequence[PromptChunk],
               images: np.ndarray) -> dict[str, float]:
    """Largest absolute difference per output between onnxruntime and PyTorch (the model's own
    deformable convs) on ``images`` [1, 3, H, W]."""
    detector = FixedPromptDetector(model, chunks).eval()
    device = model.head.bias_lang.device
    expected = detector(torch.from_numpy(images).to(device))
    found = run_onnx(path, images)
    return {name: float(np.abs(found[name] - expected[name].cpu().numpy()).max()) for name in OUTPUT_NAMES}
