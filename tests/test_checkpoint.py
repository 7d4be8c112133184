"""Tests of glip.checkpoint: the official name mapping in both directions, strict loading, our format.

The full-size models (GLIP-T, GLIP-T(A), GLIP-L) are only ever built with their parameters on the
meta device, and their official state dicts are built from the reference manifests as meta tensors,
so these tests need no real weights and little memory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from glip import checkpoint
from glip.checkpoint import (
    _DROPPED,
    CheckpointError,
    convert_official_state_dict,
    export_official_state_dict,
    infer_config,
    load_glip,
    load_official,
    load_shared_state,
    load_state_strict,
    map_official_key,
    save_glip,
)
from glip.config import GLIPConfig, get_config
from glip.modeling import GLIP
from glip.modeling.anchors import cell_anchor
from support import require_reference

MANIFESTS = {
    "glip-t": ("glip_t", "manifest_glip_t.json"),
    "glip-t-a": ("glip_t_a", "manifest_glip_t_a.json"),
    "glip-l": ("glip_l", "manifest_glip_l.json"),
}
_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def _manifest_entries(name: str) -> list[list]:
    return json.loads(require_reference(*MANIFESTS[name]).read_text())["entries"]


def _meta_official_state(name: str) -> dict[str, torch.Tensor]:
    """An official-named state dict with the manifest's shapes and dtypes, holding no data."""
    return {key: torch.empty(shape, dtype=_DTYPES[dtype], device="meta")
            for key, shape, dtype, _ in _manifest_entries(name)}


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Build modules with every parameter moved to the meta device as it is registered (buffers stay
    real). ``with torch.device("meta")`` cannot be used: the Swin constructor reads a tensor's values."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def _randomised(model: GLIP, seed: int = 0) -> GLIP:
    """Give every float parameter distinct random values, so a mix-up of two same-shaped tensors in
    the name mapping cannot go unnoticed (fresh models hold many identical zeros and ones)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


def _save_official(state: dict[str, torch.Tensor], path: Path, prefix: str = "module.",
                   wrapped: bool = True) -> Path:
    model = {prefix + key: value.clone() for key, value in state.items()}
    torch.save({"model": model, "optimizer": {}, "iteration": 0} if wrapped else model, path)
    return path


def _assert_same_state(actual: GLIP, expected: GLIP) -> None:
    a, e = actual.state_dict(), expected.state_dict()
    assert list(a) == list(e)
    for key in e:
        assert a[key].dtype == e[key].dtype, key
        assert torch.equal(a[key], e[key]), key


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, GLIP]:
    return {name: _randomised(GLIP(get_config(name)), seed=index)
            for index, name in enumerate(("glip-tiny", "glip-tiny-nofusion"))}


# --- export (ours -> official) -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["glip-tiny", "glip-tiny-nofusion"])
def test_export_then_load_official_is_bit_identical(name: str, tiny_models: dict[str, GLIP],
                                                    tmp_path: Path) -> None:
    model = tiny_models[name]
    exported = export_official_state_dict(model)
    assert not any(key.startswith("module.") for key in exported)
    path = _save_official(exported, tmp_path / "official.pth")
    loaded = load_official(path, get_config(name))
    _assert_same_state(loaded, model)


def test_export_adds_anchor_templates_and_zero_legacy_classifier(tiny_models: dict[str, GLIP]) -> None:
    model = tiny_models["glip-tiny"]
    exported = export_official_state_dict(model)
    head = model.config.head
    for level, (size, stride) in enumerate(zip(head.anchor_sizes, head.anchor_strides)):
        assert torch.equal(exported[f"rpn.anchor_generator.cell_anchors.{level}"], cell_anchor(size, stride))
    weight, bias = exported["rpn.head.cls_logits.weight"], exported["rpn.head.cls_logits.bias"]
    assert weight.shape == (head.num_legacy_classes, head.channels, 1, 1)
    assert bias.shape == (head.num_legacy_classes,)
    assert not weight.any() and not bias.any()


def test_export_names_the_tower_blocks_as_the_official_model() -> None:
    with _parameters_on_meta():
        fused, plain = GLIP(get_config("glip-t")), GLIP(get_config("glip-t-a"))
    fused_keys, plain_keys = export_official_state_dict(fused), export_official_state_dict(plain)
    # Fused: (fusion, BERT layer, DyHead) per block -> indices 3i, 3i+1, 3i+2.
    assert "rpn.head.dyhead_tower.3.b_attn.attn.v_proj.weight" in fused_keys
    assert "rpn.head.dyhead_tower.4.attention.self.query.weight" in fused_keys
    assert "rpn.head.dyhead_tower.5.DyConv.0.conv.weight" in fused_keys
    assert "rpn.head.dyhead_tower.17.offset.weight" in fused_keys
    assert "rpn.head.dyhead_tower.18.offset.weight" not in fused_keys
    # Without fusion every tower entry is a DyHead block.
    assert "rpn.head.dyhead_tower.5.DyConv.2.bn.weight" in plain_keys
    assert not any(".b_attn." in key or "dyhead_tower.6." in key for key in plain_keys)
    assert "backbone.fpn.fpn_inner2.weight" in fused_keys and "backbone.fpn.fpn_layer4.bias" in fused_keys
    assert "backbone.fpn.top_blocks.p7.weight" in fused_keys
    assert "language_backbone.body.model.encoder.layer.11.output.dense.weight" in fused_keys


def test_export_refuses_a_parameter_without_an_official_name() -> None:
    model = GLIP(get_config("glip-tiny-nofusion"))
    model.head.temperature = nn.Parameter(torch.ones(1))
    with pytest.raises(CheckpointError, match=r"head\.temperature"):
        export_official_state_dict(model)


@pytest.mark.parametrize("name", ["glip-t", "glip-t-a", "glip-l"])
def test_export_keys_and_shapes_equal_the_official_manifest(name: str) -> None:
    entries = _manifest_entries(name)
    with _parameters_on_meta():
        model = GLIP(get_config(name))
    exported = export_official_state_dict(model)
    manifest = {key: (tuple(shape), _DTYPES[dtype]) for key, shape, dtype, _ in entries}
    differing = set(exported) ^ set(manifest)
    assert all(_DROPPED.match(key) for key in differing), sorted(differing)
    wrong = {key: (tuple(exported[key].shape), exported[key].dtype, manifest[key]) for key in exported
             if key in manifest and (tuple(exported[key].shape), exported[key].dtype) != manifest[key]}
    assert not wrong
    # The exported key set is the official one, and the entries that are not learned (Swin's
    # relative-position indices, the anchor templates) hold the official values.
    assert set(exported) == set(manifest)
    buffers = np.load(require_reference(MANIFESTS[name][0], "nonfloat_buffers.npz"))
    head = model.config.head
    templates = {f"rpn.anchor_generator.cell_anchors.{level}": cell_anchor(size, stride)
                 for level, (size, stride) in enumerate(zip(head.anchor_sizes, head.anchor_strides))}
    kept = [key for key, _, _, rule in entries if rule in ("keep_nonfloat", "keep_float_constant")]
    assert kept
    for key in kept:
        ours = templates[key] if key in templates else exported[key]
        assert torch.equal(ours, torch.from_numpy(buffers[key])), key


# --- official -> ours ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["glip-t", "glip-t-a", "glip-l"])
def test_official_manifest_converts_to_exactly_our_state_dict(name: str) -> None:
    state = _meta_official_state(name)
    buffers = np.load(require_reference(MANIFESTS[name][0], "nonfloat_buffers.npz"))
    for key in state:
        if key.startswith("rpn.anchor_generator."):  # checked against the config: needs real values
            state[key] = torch.from_numpy(buffers[key])
    converted = convert_official_state_dict(state, get_config(name))
    with _parameters_on_meta():
        expected = GLIP(get_config(name)).state_dict()
    assert set(converted) == set(expected)
    assert all(converted[key].shape == expected[key].shape for key in expected)


def test_unknown_official_key_is_reported_by_name() -> None:
    state = {"rpn.head.some_new_layer.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"rpn\.head\.some_new_layer\.weight"):
        convert_official_state_dict(state, get_config("glip-tiny"))
    assert map_official_key("rpn.head.some_new_layer.weight", get_config("glip-tiny").head) is None


def test_strict_loading_lists_missing_unexpected_and_wrong_shape_keys(tiny_models: dict[str, GLIP]) -> None:
    source = tiny_models["glip-tiny"]
    state = {key: value.clone() for key, value in source.state_dict().items()}
    del state["head.bias_lang"]
    state["head.not_a_parameter"] = torch.zeros(3)
    state["fpn.p6.weight"] = torch.zeros(5, 5, 3, 3)
    target = GLIP(get_config("glip-tiny"))
    before = {key: value.clone() for key, value in target.state_dict().items()}
    with pytest.raises(CheckpointError) as raised:
        load_state_strict(target, state)
    message = str(raised.value)
    assert "1 missing: head.bias_lang" in message
    assert "1 unexpected: head.not_a_parameter" in message
    assert "wrong shape: fpn.p6.weight (5, 5, 3, 3)" in message
    # Nothing was half-loaded.
    after = target.state_dict()
    assert all(torch.equal(after[key], before[key]) for key in before)


def test_official_file_with_a_missing_key_is_refused(tiny_models: dict[str, GLIP], tmp_path: Path) -> None:
    exported = export_official_state_dict(tiny_models["glip-tiny"])
    del exported["rpn.head.dyhead_tower.3.b_attn.gamma_v"]  # block 1 = tower entries 3 (fusion), 4, 5
    path = _save_official(exported, tmp_path / "incomplete.pth")
    with pytest.raises(CheckpointError, match=r"missing: head\.blocks\.1\.fusion\.gamma_visual"):
        load_official(path, "glip-tiny")


@pytest.mark.parametrize(("stored", "asked"), [("glip-l", "glip-t"), ("glip-t", "glip-l"), ("glip-t-a", "glip-t")])
def test_checkpoint_of_another_model_is_refused_naming_both(stored: str, asked: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    state = _meta_official_state(stored)
    monkeypatch.setattr(checkpoint, "read_official_state_dict", lambda path: state)
    with pytest.raises(CheckpointError) as raised:
        load_official("weights.pth", asked)
    message = str(raised.value)
    assert f"holds a {stored} model" in message
    assert f"config '{asked}'" in message
    assert f"--config {stored}" in message


@pytest.mark.parametrize("name", ["glip-t", "glip-t-a", "glip-l"])
def test_infer_config_recognises_the_presets(name: str) -> None:
    inferred = infer_config(_meta_official_state(name))
    assert inferred.name == name
    assert inferred == get_config(name)


def test_infer_config_refuses_a_state_dict_that_is_not_glip() -> None:
    with pytest.raises(CheckpointError, match="not a GLIP checkpoint"):
        infer_config({"model.layer1.weight": torch.zeros(1)})


@pytest.mark.parametrize(("prefix", "wrapped"), [("module.", True), ("", True), ("", False), ("module.", False)])
def test_official_file_layouts_load(prefix: str, wrapped: bool, tiny_models: dict[str, GLIP],
                                    tmp_path: Path) -> None:
    model = tiny_models["glip-tiny-nofusion"]
    path = _save_official(export_official_state_dict(model), tmp_path / "weights.pth", prefix, wrapped)
    _assert_same_state(load_official(path, "glip-tiny-nofusion"), model)
    # load_glip sends anything that is not .safetensors to the official loader.
    _assert_same_state(load_glip(path, "glip-tiny-nofusion"), model)


def test_anchor_template_that_differs_from_the_config_is_refused(tiny_models: dict[str, GLIP],
                                                                 tmp_path: Path) -> None:
    exported = export_official_state_dict(tiny_models["glip-tiny"])
    exported["rpn.anchor_generator.cell_anchors.2"] = torch.tensor([[-127.5, -127.5, 127.5, 127.5]])
    path = _save_official(exported, tmp_path / "other_anchors.pth")
    with pytest.raises(CheckpointError, match=r"rpn\.anchor_generator\.cell_anchors\.2"):
        load_official(path, "glip-tiny")


def test_extra_legacy_entries_load_and_enable_prompt_tuning(tiny_models: dict[str, GLIP], tmp_path: Path) -> None:
    model = tiny_models["glip-tiny"]
    exported = export_official_state_dict(model)
    exported["language_backbone.body.model.embeddings.position_ids"] = torch.arange(512)[None]
    tunable = torch.randn(1000, model.config.text.hidden_size)
    exported["rpn.tunable_linear.weight"] = tunable
    path = _save_official(exported, tmp_path / "prompt_tuned.pth")
    loaded = load_official(path, "glip-tiny")
    assert loaded.prompt_embedding is not None
    assert torch.equal(loaded.prompt_embedding.detach(), tunable)
    state = loaded.state_dict()
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    # ... and it is exported again under its official name.
    assert torch.equal(export_official_state_dict(loaded)["rpn.tunable_linear.weight"], tunable)


@pytest.mark.parametrize("content", [b"\x00\x13\x80garbage" * 50, "not a checkpoint\n".encode()])
def test_file_that_is_not_a_checkpoint_gives_checkpoint_error(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_official(path, "glip-tiny")
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_glip(bad)


def test_checkpoint_without_a_state_dict_or_file_gives_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"model": {"a": 1}, "iteration": 3}, path)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_official(path, "glip-tiny")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_official(tmp_path / "absent.pth", "glip-tiny")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_glip(tmp_path / "absent.safetensors")


# --- our format ------------------------------------------------------------------------------------


def test_safetensors_round_trip_keeps_weights_and_config(tiny_models: dict[str, GLIP], tmp_path: Path) -> None:
    model = tiny_models["glip-tiny"]
    path = save_glip(model, tmp_path / "out" / "tiny.safetensors", extra_metadata={"step": "7"})
    assert path.is_file() and path.with_suffix(".json").is_file()
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "glip" and metadata["step"] == "7"
    assert GLIPConfig.from_dict(json.loads(metadata["config"])) == model.config
    assert GLIPConfig.from_dict(json.loads(path.with_suffix(".json").read_text())) == model.config
    loaded = load_glip(path)
    assert loaded.config == model.config
    _assert_same_state(loaded, model)
    _assert_same_state(load_glip(path.parent), model)  # a directory holding one checkpoint
    with pytest.raises(CheckpointError, match="'glip-tiny' model but config 'glip-tiny-nofusion'"):
        load_glip(path, "glip-tiny-nofusion")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_glip(model, tmp_path / "tiny.pt")


def test_safetensors_config_comes_from_the_sidecar_when_metadata_lacks_it(tiny_models: dict[str, GLIP],
                                                                           tmp_path: Path) -> None:
    model = tiny_models["glip-tiny-nofusion"]
    path = tmp_path / "bare.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="has no config"):
        load_glip(path)
    _assert_same_state(load_glip(path, "glip-tiny-nofusion"), model)
    path.with_suffix(".json").write_text(json.dumps(model.config.to_dict()))
    loaded = load_glip(path)
    assert loaded.config.name == "glip-tiny-nofusion"
    _assert_same_state(loaded, model)


def test_safetensors_round_trip_keeps_the_prompt_embedding(tmp_path: Path) -> None:
    model = GLIP(get_config("glip-tiny-nofusion"))
    with torch.no_grad():
        model.enable_prompt_embedding(300).normal_()
    loaded = load_glip(save_glip(model, tmp_path / "tuned.safetensors"))
    assert loaded.prompt_embedding is not None and loaded.prompt_embedding.shape == (300, 32)
    _assert_same_state(loaded, model)


def test_shared_state_copies_what_both_have_and_lists_the_rest(tiny_models: dict[str, GLIP]) -> None:
    fused, source = tiny_models["glip-tiny"], tiny_models["glip-tiny-nofusion"]
    twin = GLIP(get_config("glip-tiny-nofusion"))
    target = GLIP(get_config("glip-tiny"))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    result = load_shared_state(target, source.state_dict())
    state = target.state_dict()
    assert result.copied and not result.unused  # the no-fusion model's tensors all exist in the fused one
    assert set(result.kept) == set(fused.state_dict()) - set(twin.state_dict())
    assert any(".fusion." in k for k in result.kept)
    for key in result.copied:
        assert torch.equal(state[key], source.state_dict()[key])
    for key in result.kept:
        assert torch.equal(state[key], before[key])
    # The other way round: the fusion tensors are reported unused.
    back = load_shared_state(twin, fused.state_dict())
    assert not back.kept and set(back.unused) == set(result.kept)


def test_shared_state_refuses_an_unrelated_state_dict() -> None:
    with pytest.raises(CheckpointError, match="shares no tensor"):
        load_shared_state(GLIP(get_config("glip-tiny")), {"classifier.weight": torch.zeros(3, 3)})
