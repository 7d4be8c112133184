"""glip.shapes.texture_pretrain (``glip shapes texture-pretrain``) on a few generated scenes with the
embedded model: the step that teaches the texture skip fill before stage 5 of the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from glip.checkpoint import load_glip
from glip.default_model import default_weights
from glip.shapes import cli
from glip.shapes.texture_pretrain import (FILL_WORDS, Region, accuracy, central_cells, phrase_regions, pretrain,
                                          pretrain_checkpoint)


def test_phrase_regions_keep_phrases_naming_exactly_one_word(shapes_root: Path) -> None:
    root = shapes_root / "attributes-train"
    images = phrase_regions(root, FILL_WORDS)
    assert images, "attributes-train names fills"
    expected = []
    for line in (root / "grounding.jsonl").read_text().splitlines():
        record = json.loads(line)
        for region in record["grounding"]["regions"]:
            named = [w for w in FILL_WORDS if w in region["phrase"].split()]
            if len(named) == 1:
                expected.append((tuple(region["bbox"]), FILL_WORDS.index(named[0])))
    found = [(region.box, region.label) for image in images for region in image.regions]
    assert found == expected
    assert all(image.path.is_file() for image in images)


def test_central_cells_cover_each_large_enough_region_at_its_centre() -> None:
    responses = torch.zeros(1, 2, 80, 80)  # a 320-pixel input: P3 is 40x40, P4 20x20
    responses[0, 0, 20:40, 20:40] = 1.0  # channel 0 lights up over pixels 80..160
    regions = [Region((80.0, 80.0, 160.0, 160.0), 1), Region((300.0, 300.0, 306.0, 306.0), 0)]
    cells = central_cells(responses, regions, scale=1.0)
    # the 80-pixel object is seen at both levels, the 6-pixel one at neither
    assert [label for _, label in cells] == [1, 1]
    for features, _ in cells:
        assert features.shape[1] == 2 and len(features) >= 1
        assert torch.all(features[:, 0] == 1.0) and torch.all(features[:, 1] == 0.0)


def test_pretrain_teaches_the_filters_and_zeroes_the_projection(shapes_root: Path) -> None:
    model = load_glip(default_weights()).float().eval()
    images = phrase_regions(shapes_root / "attributes-train", FILL_WORDS)[:4]
    before = [p.detach().clone() for p in model.head.texture_skip.filters.parameters()]
    classifier = pretrain(model, images, len(FILL_WORDS), steps=25, batch_size=4, lr=3e-3,
                          min_sizes=(320,), progress=False)
    after = list(model.head.texture_skip.filters.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    projection = model.head.texture_skip.projection
    assert torch.count_nonzero(projection.weight) == 0 and torch.count_nonzero(projection.bias) == 0
    # 25 steps on four pictures fit their regions better than chance among three words
    assert accuracy(model, classifier, images, min_size=320) > 0.5


def _filters_after(images, seed: int) -> list[torch.Tensor]:
    model = load_glip(default_weights()).float().eval()
    pretrain(model, images, len(FILL_WORDS), steps=3, batch_size=2, seed=seed, progress=False)
    return [p.detach().clone() for p in model.head.texture_skip.filters.parameters()]


def test_pretrain_is_reproducible_from_its_seed(shapes_root: Path) -> None:
    images = phrase_regions(shapes_root / "attributes-train", FILL_WORDS)
    first, again, other = _filters_after(images, 0), _filters_after(images, 0), _filters_after(images, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(a, b) for a, b in zip(first, other))


def test_pretrain_refuses_a_model_without_texture_skip_and_empty_data() -> None:
    from glip.config import get_config
    from glip.modeling.glip import GLIP

    plain = GLIP(get_config("glip-nano"))
    with pytest.raises(ValueError, match="texture_skip_channels"):
        pretrain(plain, [], 3, steps=1)
    model = load_glip(default_weights())
    with pytest.raises(ValueError, match="nothing to learn"):
        pretrain(model, [], 3, steps=1)


def test_command_writes_the_checkpoint_and_reports_held_out_accuracy(shapes_root: Path, tmp_path: Path,
                                                                     capsys) -> None:
    out = tmp_path / "textures.safetensors"
    code = cli.main(["texture-pretrain", "--weights", str(default_weights()),
                     "--grounding", str(shapes_root / "attributes-train"), "--val", str(shapes_root / "attributes"),
                     "--steps", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and str(out) in printed
    written, shipped = load_file(str(out)), load_file(str(default_weights()))
    assert torch.count_nonzero(written["head.texture_skip.projection.weight"]) == 0
    assert not torch.equal(written["head.texture_skip.filters.0.weight"],
                           shipped["head.texture_skip.filters.0.weight"].float())
    # everything but the texture skip is the input model's
    assert written.keys() == shipped.keys()
    assert all(torch.equal(written[k], shipped[k].float()) for k in shipped if not k.startswith("head.texture_skip"))
    assert out.with_suffix(".json").is_file()


def test_command_rejects_words_the_held_out_split_does_not_use_before_training(shapes_root: Path, tmp_path: Path,
                                                                               capsys) -> None:
    out = tmp_path / "textures.safetensors"
    code = cli.main(["texture-pretrain", "--weights", str(default_weights()),
                     "--grounding", str(shapes_root / "attributes-train"), "--val", str(shapes_root / "attributes"),
                     "--words", "solid", "striped", "--steps", "1", "--out", str(out)])
    assert code == cli.EXIT_ERROR
    assert "not among the words" in capsys.readouterr().err
    assert not out.exists()


def test_pretrain_checkpoint_refuses_a_wrong_output_suffix_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.safetensors"):
        pretrain_checkpoint(default_weights(), [tmp_path], tmp_path / "textures.pt")
