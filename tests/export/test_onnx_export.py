"""Export round trip on a tiny random model: onnxruntime against PyTorch, and the numpy
post-processing against the detection engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from glip.checkpoint import load_glip  # noqa: E402
from glip.engine import DetectionEngine  # noqa: E402
from glip.export.onnx_export import check_onnx, export_onnx, run_onnx  # noqa: E402
from glip.export.runtime import postprocess, preprocess  # noqa: E402
from glip.images import ImageBatch  # noqa: E402
from glip.prompts import chunk_class_names  # noqa: E402

NAMES = ["circle", "red square", "star", "blue hexagon", "cross"]


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    model = load_glip(tiny_checkpoint).eval()
    with torch.no_grad():  # non-zero offsets, so that the exported deformable convs matter
        for block in model.head.blocks:
            torch.nn.init.normal_(block.dyconv.offset_mask.weight, std=0.05)
    return model


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    chunks = chunk_class_names(NAMES, max_length=12)  # two chunks: each has its own boxes in a fused head
    assert len(chunks) == 2
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    meta = export_onnx(model, chunks, path, (64, 96))
    return path, meta, chunks


def test_onnxruntime_equals_pytorch(exported, model):
    path, meta, chunks = exported
    assert meta.phrases == NAMES
    assert sorted(set(meta.chunk_of_phrase)) == [0, 1] and len(meta.chunk_of_phrase) == len(NAMES)
    images = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    differences = check_onnx(path, model, chunks, images)
    assert max(differences.values()) < 1e-4, differences
    graph = onnx.load(str(path)).graph
    assert sum(node.op_type == "GridSample" for node in graph.node) > 0  # the convs' sampled method
    outputs = run_onnx(path, images)
    assert outputs["boxes"].shape == (1, 2, sum(meta.level_sizes), 4)
    assert outputs["scores"].shape == (1, sum(meta.level_sizes), len(NAMES))


def test_numpy_postprocess_equals_the_engine(exported, model):
    path, meta, chunks = exported
    pixels = np.random.default_rng(1).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    tensor, resized, original = preprocess(pixels, meta)
    found = postprocess(run_onnx(path, tensor), meta, resized, original)
    batch = ImageBatch(torch.from_numpy(tensor), [resized], [original])
    (expected,) = DetectionEngine(model).detect(batch, chunks)
    assert len(found["scores"]) == len(expected) > 0
    np.testing.assert_allclose(found["scores"], expected.scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(found["boxes"], expected.boxes.numpy(), atol=1e-3)
    np.testing.assert_array_equal(found["labels"], expected.labels.numpy())


def test_input_size_must_fit_the_divisibility(model, tmp_path):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(model, chunk_class_names(["circle"]), tmp_path / "x.onnx", (50, 64))
    assert not list(tmp_path.iterdir())


def test_opset_must_have_grid_sample(model, tmp_path):
    with pytest.raises(ValueError, match="opset 15 has no GridSample"):
        export_onnx(model, chunk_class_names(["circle"]), tmp_path / "x.onnx", (64, 64), opset=15)
    assert not list(tmp_path.iterdir())
