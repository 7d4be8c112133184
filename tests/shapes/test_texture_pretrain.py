"""tools/texture_pretrain.py on a few generated scenes with the embedded model: the step that
teaches the texture skip fill before the grounding training of the shipped model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from glip.checkpoint import load_glip
from glip.default_model import default_weights

TOOL = Path(__file__).resolve().parents[2] / "tools" / "texture_pretrain.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("texture_pretrain", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_phrase_regions_keep_phrases_naming_exactly_one_word(tool, shapes_root: Path) -> None:
    root = shapes_root / "attributes-train"
    images = tool.phrase_regions(root, tool.FILL_WORDS)
    assert images, "attributes-train names fills"
    expected = []
    for line in (root / "grounding.jsonl").read_text().splitlines():
        record = json.loads(line)
        for region in record["grounding"]["regions"]:
            named = [w for w in tool.FILL_WORDS if w in region["phrase"].split()]
            if len(named) == 1:
                expected.append((tuple(region["bbox"]), tool.FILL_WORDS.index(named[0])))
    found = [(region.box, region.label) for image in images for region in image.regions]
    assert found == expected
    assert all(image.path.is_file() for image in images)


def test_central_cells_cover_each_large_enough_region_at_its_centre(tool) -> None:
    responses = torch.zeros(1, 2, 80, 80)  # a 320-pixel input: P3 is 40x40, P4 20x20
    responses[0, 0, 20:40, 20:40] = 1.0  # channel 0 lights up over pixels 80..160
    regions = [tool.Region((80.0, 80.0, 160.0, 160.0), 1), tool.Region((300.0, 300.0, 306.0, 306.0), 0)]
    cells = tool.central_cells(responses, regions, scale=1.0)
    # the 80-pixel object is seen at both levels, the 6-pixel one at neither
    assert [label for _, label in cells] == [1, 1]
    for features, _ in cells:
        assert features.shape[1] == 2 and len(features) >= 1
        assert torch.all(features[:, 0] == 1.0) and torch.all(features[:, 1] == 0.0)


def test_pretrain_teaches_the_filters_and_zeroes_the_projection(tool, shapes_root: Path) -> None:
    model = load_glip(default_weights()).float().eval()
    images = tool.phrase_regions(shapes_root / "attributes-train", tool.FILL_WORDS)[:4]
    before = [p.detach().clone() for p in model.head.texture_skip.filters.parameters()]
    classifier = tool.pretrain(model, images, len(tool.FILL_WORDS), steps=25, batch_size=4, lr=3e-3,
                               min_sizes=(320,), progress=False)
    after = list(model.head.texture_skip.filters.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    projection = model.head.texture_skip.projection
    assert torch.count_nonzero(projection.weight) == 0 and torch.count_nonzero(projection.bias) == 0
    # 25 steps on four pictures fit their regions better than chance among three words
    assert tool.accuracy(model, classifier, images, min_size=320) > 0.5


def test_pretrain_refuses_a_model_without_texture_skip_and_empty_data(tool) -> None:
    from glip.config import get_config
    from glip.modeling.glip import GLIP

    plain = GLIP(get_config("glip-nano"))
    with pytest.raises(ValueError, match="texture_skip_channels"):
        tool.pretrain(plain, [], 3, steps=1)
    model = load_glip(default_weights())
    with pytest.raises(ValueError, match="nothing to learn"):
        tool.pretrain(model, [], 3, steps=1)
