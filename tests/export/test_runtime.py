"""The numpy side of an exported graph: preprocessing and post-processing, without onnxruntime."""

from __future__ import annotations

import numpy as np
import torch

from glip.export.runtime import ExportMetadata, legacy_nms, preprocess
from glip.images import prepare_images
from glip.modeling.postprocess import legacy_nms as torch_legacy_nms


def _meta(**changes) -> ExportMetadata:
    values = dict(model="m", phrases=["a"], chunk_of_phrase=[0], input_height=64, input_width=64, level_sizes=[1],
                  pixel_mean=[103.53, 116.28, 123.675], pixel_std=[57.375, 57.12, 58.395], min_size=32,
                  max_size=64, candidate_threshold=0.05, pre_nms_top_n=1000, nms_threshold=0.6,
                  detections_per_image=100, min_box_size=0.0)
    values.update(changes)
    return ExportMetadata(**values)


def test_preprocess_equals_the_pytorch_pipeline_and_pads():
    from glip.config import InputConfig

    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    tensor, resized, original = preprocess(pixels, _meta())
    expected = prepare_images([pixels], InputConfig(min_size=32, max_size=64))
    assert resized == expected.image_sizes[0] and original == (40, 50)
    h, w = resized
    np.testing.assert_array_equal(tensor[0, :, :h, :w], expected.tensor[0, :, :h, :w].numpy())
    assert tensor.shape == (1, 3, 64, 64) and not tensor[0, :, h:, :].any() and not tensor[0, :, :, w:].any()


def test_preprocess_shrinks_a_picture_that_does_not_fit():
    pixels = np.zeros((30, 200, 3), dtype=np.uint8)
    _, resized, _ = preprocess(pixels, _meta(min_size=64, max_size=None))
    assert resized[1] <= 64 and resized[0] >= 1


def test_metadata_round_trip():
    meta = _meta(phrases=["star", "red circle"], chunk_of_phrase=[0, 1])
    assert ExportMetadata.from_json(meta.to_json()) == meta


def test_nms_equals_the_engine():
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 50, (60, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (60, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, 60).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    expected = torch_legacy_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), 0.5)
    np.testing.assert_array_equal(legacy_nms(boxes, scores, labels, 0.5), expected.numpy())


def test_runtime_loads_without_torch():
    import subprocess
    import sys

    code = "import sys, glip.export.runtime; print('torch' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"
