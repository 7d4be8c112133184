"""tools/attribute_probe.py on a few generated attributes scenes with the embedded model: the
diagnostics the README's attribute figures come from. A research tool, not part of the package
(see tools/README.md), so it is loaded by file path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

TOOL = Path(__file__).resolve().parents[2] / "tools" / "attribute_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("attribute_probe", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_centre_features_cover_every_stage_and_visible_object(probe, shapes_root: Path) -> None:
    data = shapes_root / "attributes"
    features, labels = probe.centre_features(None, data, num_scenes=4, attribute="colour")
    scenes = probe.read_jsonl(data / "scenes.jsonl")[:4]
    visible = [obj for scene in scenes for obj in scene["objects"] if obj["visible"] >= 0.9]
    assert len(labels) == len(visible) > 0
    assert labels.tolist() == [probe.VALUES["colour"].index(obj["colour"]) for obj in visible]
    assert {"pixel", "Swin stage 0", "FPN P3", "head P3", "head P4"} <= set(features)
    assert features["pixel"].shape == (len(visible), 3) and features["FPN P3"].shape == (len(visible), 64)
    # The input pixel at a solid object's centre differs between objects of different colours.
    assert len({tuple(row.tolist()) for row in features["pixel"]}) > 1


def test_text_similarity_is_one_for_the_same_caption_and_lower_for_another_colour(probe, shapes_root: Path) -> None:
    data = shapes_root / "attributes"
    same = probe.text_similarity(None, data, ("a black dotted star", "a black dotted star"))
    assert [pair for pair, *_ in same] == ["a/a", "black/black", "dotted/dotted", "star/star"]
    assert all(value == pytest.approx(1.0, abs=1e-5) for _, *values in same for value in values)
    other = dict((pair, values) for pair, *values in
                 probe.text_similarity(None, data, ("a black dotted star", "a red solid star")))
    assert other["black/red"][0] < 0.5  # the text encoder tells the colour words apart
    assert other["black/red"][1] < 0.99  # and so does the shipped model's dot-product text
    assert other["black/red"][2] < 0.95  # and what meets the image, after the projection
    with pytest.raises(SystemExit, match="same number of tokens"):
        probe.text_similarity(None, data, ("a star", "a red solid star"))


def test_probe_accuracy_finds_a_linearly_separable_attribute(probe) -> None:
    torch.manual_seed(0)
    labels = torch.arange(200) % 4
    features = torch.nn.functional.one_hot(labels, 4).float() * 3 + torch.randn(200, 4) * 0.1
    assert probe.probe_accuracy(features, labels, classes=4) == 1.0
    assert probe.probe_accuracy(torch.randn(200, 4), labels, classes=4) < 0.6


def test_stage_features_keep_only_the_named_shapes(probe, shapes_root: Path) -> None:
    data = shapes_root / "attributes"
    scenes = probe.read_jsonl(data / "scenes.jsonl")[:6]
    present = sorted({obj["shape"] for scene in scenes for obj in scene["objects"]})[:2]
    features, labels = probe.stage_features(None, data, num_scenes=6, attribute="shape", only=tuple(present))
    kept = [obj for scene in scenes for obj in scene["objects"] if obj["shape"] in present]
    assert labels.tolist() == [probe.VALUES["shape"].index(obj["shape"]) for obj in kept] and kept
    assert all(rows.shape[0] == len(kept) for rows in features.values())
