"""Checkpoints: official GLIP ``.pth`` files in, our safetensors + JSON config in and out.

Official files hold ``{"model": state_dict, "optimizer": ..., ...}`` (or a bare state dict) whose
keys carry the DDP prefix ``module.``. They are mapped to our module names by the rules below and
loaded strictly: any missing, unexpected or wrongly-shaped key is reported, nothing is half-loaded.
A few official entries are known to be redundant and are dropped on purpose (anchor templates,
which are checked against the config; BERT's ``position_ids``; the vestigial 80-class conv).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from glip.config import PRESETS, GLIPConfig, HeadConfig, SwinConfig, TextConfig, get_config
from glip.files import write_atomically
from glip.modeling.anchors import cell_anchor
from glip.modeling.glip import GLIP

logger = logging.getLogger(__name__)

FORMAT_TAG = "glip"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked (wrong model, missing/unexpected/mis-shaped keys)."""


# Official -> ours, applied in order to the key with ``module.`` removed. Head-tower keys are
# handled separately (their block index depends on whether the model has fusion layers).
_PREFIX_RULES: list[tuple[str, str]] = [
    (r"^backbone\.body\.", "backbone."),
    (r"^backbone\.fpn\.fpn_inner(\d)\.", "fpn.lateral.{n2}."),
    (r"^backbone\.fpn\.fpn_layer(\d)\.", "fpn.output.{n2}."),
    (r"^backbone\.fpn\.top_blocks\.(p6|p7)\.", "fpn.{g1}."),
    (r"^language_backbone\.body\.model\.", "text_encoder.bert."),
    (r"^rpn\.head\.bbox_pred\.", "head.box_regression."),
    (r"^rpn\.head\.centerness\.", "head.centerness."),
    (r"^rpn\.head\.scales\.", "head.scales."),
    (r"^rpn\.head\.dot_product_projection_text\.", "head.text_projection."),
    (r"^rpn\.head\.(log_scale|bias_lang|bias0)$", "head.{g1}"),
    (r"^rpn\.tunable_linear\.weight$", "prompt_embedding"),
]

_FUSION_RULES = [
    ("b_attn.layer_norm_v.", "norm_visual."), ("b_attn.layer_norm_l.", "norm_text."),
    ("b_attn.gamma_v", "gamma_visual"), ("b_attn.gamma_l", "gamma_text"),
    ("b_attn.attn.v_proj.", "attn.visual_query."), ("b_attn.attn.l_proj.", "attn.text_key."),
    ("b_attn.attn.values_v_proj.", "attn.visual_value."), ("b_attn.attn.values_l_proj.", "attn.text_value."),
    ("b_attn.attn.out_v_proj.", "attn.visual_out."), ("b_attn.attn.out_l_proj.", "attn.text_out."),
]
_DYCONV_RULES = [
    ("DyConv.0.conv.", "from_coarser.conv."), ("DyConv.0.bn.", "from_coarser.norm."),
    ("DyConv.1.conv.", "same_level.conv."), ("DyConv.1.bn.", "same_level.norm."),
    ("DyConv.2.conv.", "from_finer.conv."), ("DyConv.2.bn.", "from_finer.norm."),
    ("AttnConv.1.", "scale_attention."), ("relu.fc.0.", "dyrelu.fc1."), ("relu.fc.2.", "dyrelu.fc2."),
    ("offset.", "offset_mask."),
]

# Official entries that carry no information we need (see module docstring).
_DROPPED = re.compile(
    r"^(rpn\.anchor_generator\.cell_anchors\.\d+"
    r"|rpn\.head\.cls_logits\.(weight|bias)"
    r"|language_backbone\.body\.model\.embeddings\.(position_ids|token_type_ids)"
    r"|language_backbone\.body\.model\.pooler\..*)$"
)


def _tower_parts(head: HeadConfig) -> list[str]:
    parts = []
    if head.use_fusion:
        parts.append("fusion")
    if head.use_text_layers:
        parts.append("text_layer")
    return parts + ["dyconv"]


def map_official_key(key: str, head: HeadConfig) -> str | None:
    """Our name for an official key (``module.`` already removed), or None if no rule applies."""
    match = re.match(r"^rpn\.head\.dyhead_tower\.(\d+)\.(.*)$", key)
    if match:
        parts = _tower_parts(head)
        index, rest = int(match.group(1)), match.group(2)
        block, part = divmod(index, len(parts))
        kind = parts[part]
        rules = {"fusion": _FUSION_RULES, "dyconv": _DYCONV_RULES}.get(kind, [])
        for old, new in rules:
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        else:
            if rules:
                return None
        return f"head.blocks.{block}.{kind}.{rest}"
    for pattern, template in _PREFIX_RULES:
        match = re.match(pattern, key)
        if match:
            groups = match.groups()
            replacement = template.format(
                g1=groups[0] if groups else "", n2=int(groups[0]) - 2 if groups and groups[0].isdigit() else ""
            )
            return replacement + key[match.end():]
    return None


def _unescape(fragment: str) -> str:
    """Literal text of a regex fragment made of plain characters and escapes (``\\.`` -> ``.``)."""
    return re.sub(r"\\(.)", r"\1", fragment)


def _inverse_prefix_rule(pattern: str, template: str) -> tuple[re.Pattern[str], str, str | None]:
    """Turn one official->ours rule around: (regex on our key, official format string, placeholder).

    The official pattern has at most one capture group; its text becomes ``{}`` in the format string.
    The template's placeholder becomes a capture group on our side: ``{n2}`` (official number - 2)
    captures digits, ``{g1}`` (the official group verbatim) captures what the official group allowed.
    """
    anchored_end = pattern.endswith("$")
    body = pattern.removeprefix("^").removesuffix("$")
    group = re.search(r"\(([^()]*)\)", body)
    if group is None:
        official, group_regex = _unescape(body), ""
    else:
        official = _unescape(body[:group.start()]) + "{}" + _unescape(body[group.end():])
        group_regex = group.group(1)
    placeholder = re.search(r"\{(n2|g1)\}", template)
    if placeholder is None:
        ours = re.escape(template)
    else:
        capture = r"(\d+)" if placeholder.group(1) == "n2" else f"({group_regex})"
        ours = re.escape(template[:placeholder.start()]) + capture + re.escape(template[placeholder.end():])
    return re.compile("^" + ours + ("$" if anchored_end else "")), official, placeholder and placeholder.group(1)


def _unmap_key(key: str, head: HeadConfig) -> str | None:
    """The official name of one of our keys (inverse of :func:`map_official_key`), or None."""
    match = re.match(r"^head\.blocks\.(\d+)\.(fusion|text_layer|dyconv)\.(.*)$", key)
    if match:
        parts = _tower_parts(head)
        block, kind, rest = int(match.group(1)), match.group(2), match.group(3)
        if kind not in parts:
            return None
        rules = {"fusion": _FUSION_RULES, "dyconv": _DYCONV_RULES}.get(kind, [])
        for old, new in rules:
            if rest.startswith(new):
                rest = old + rest[len(new):]
                break
        else:
            if rules:
                return None
        return f"rpn.head.dyhead_tower.{block * len(parts) + parts.index(kind)}.{rest}"
    for pattern, template in _PREFIX_RULES:
        ours, official, placeholder = _inverse_prefix_rule(pattern, template)
        match = ours.match(key)
        if match:
            value = match.group(1) if placeholder else None
            if placeholder == "n2":
                value = str(int(value) + 2)
            return official.format(value) + key[match.end():]
    return None


# Our GLIPv2 parts (module name -> what it is), which the official GLIP code has no names for.
GLIPV2_PARTS = {"pretraining_heads": "pre-training heads (inter-image projections, MLM head)",
                "mask_head": "language-aware mask head"}


def export_official_state_dict(model: GLIP, detector_only: bool = False) -> dict[str, torch.Tensor]:
    """Our model's weights under the official names (no ``module.`` prefix), as an official file has
    them: with the anchor templates ``rpn.anchor_generator.cell_anchors.{i}`` and a zero vestigial
    ``rpn.head.cls_logits`` conv. Tensors share storage with the model.

    The names come from inverting the official->ours rules; every result is mapped forward again
    and must give back our key, so the two directions cannot drift apart.

    GLIPv2's pre-training heads and mask head (`GLIPV2_PARTS`) have no official names (Microsoft
    released no GLIPv2 code to name them): a model with them is a `CheckpointError` saying which,
    unless ``detector_only``, which writes the detector alone (what official GLIP can load) and
    leaves them out.

    Example:
        >>> state = export_official_state_dict(GLIP(get_config("glip-tiny")))
        >>> torch.save({"model": {"module." + k: v for k, v in state.items()}}, "tiny.pth")
    """
    config = model.config
    if config.head.alignment_skip:
        raise CheckpointError("this model has head.alignment_skip, which official GLIP does not have: it cannot be "
                              "written in the official format (save it with save_glip instead)")
    parts = [name for name in GLIPV2_PARTS if getattr(model, name, None) is not None]
    if parts and not detector_only:
        described = "; ".join(f"{name}: {GLIPV2_PARTS[name]}" for name in parts)
        raise CheckpointError(f"this model has GLIPv2 parts the official GLIP format has no names for ({described}): "
                              "export the detector alone (export_official_state_dict(model, detector_only=True)), "
                              "or keep everything in our format with save_glip")
    exported: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.split(".", 1)[0] in parts:
            continue  # detector_only: left out, see above
        official = _unmap_key(key, config.head)
        if official is None or map_official_key(official, config.head) != key:
            raise CheckpointError(f"no official name for our key {key} (got {official})")
        exported[official] = value
    reference = model.head.bias0
    head = config.head
    for level, (size, stride) in enumerate(zip(head.anchor_sizes, head.anchor_strides)):
        exported[f"rpn.anchor_generator.cell_anchors.{level}"] = cell_anchor(size, stride).to(reference.device)
    exported["rpn.head.cls_logits.weight"] = torch.zeros(
        head.num_legacy_classes, head.channels, 1, 1, dtype=reference.dtype, device=reference.device)
    exported["rpn.head.cls_logits.bias"] = torch.zeros(
        head.num_legacy_classes, dtype=reference.dtype, device=reference.device)
    return exported


def read_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official ``.pth``: ``{"model": ...}`` or a bare state dict; ``module.`` stripped when
    every key carries it (as the official loader does)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); download or save the checkpoint again")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means "not a checkpoint we can read"
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_load_failure(error)})") from error
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict (expected {{'model': state_dict}} or a state dict)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _load_failure(error: Exception) -> str:
    """What a failed ``torch.load(weights_only=True)`` means, in one short clause of ours: torch's own
    text runs to paragraphs and advises ``weights_only=False``, which would let the file run code."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # without terminal colour codes
    if isinstance(error, EOFError) or "PytorchStreamReader" in text:
        return "truncated or damaged; download or save it again"
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsupported:
        return (f"it holds Python objects besides tensors ({unsupported.group(1)}), which are not unpickled because "
                "that could run code; a checkpoint of glip train becomes a model file with "
                "'glip convert CHECKPOINT OUT.safetensors', other files can keep the tensors alone: "
                "torch.save({'model': model.state_dict()}, path)")
    if "Weights only load failed" in text or "invalid load key" in text:
        return "its bytes are not a PyTorch pickle or archive; check that the file is a .pth checkpoint"
    first = text.splitlines()[0] if text else ""
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    return f"{type(error).__name__}: {sentence}" if sentence else type(error).__name__


def infer_config(state: Mapping[str, torch.Tensor]) -> GLIPConfig:
    """The preset (glip-t, glip-t-a, glip-l) an official state dict holds; CheckpointError if none."""
    inferred = _infer_architecture(state)
    for name in ("glip-t", "glip-t-a", "glip-l"):
        preset = get_config(name)
        if _architecture(preset) == _architecture(inferred) and _widths_match(preset, state):
            return preset
    raise CheckpointError(
        f"the checkpoint's architecture ({_describe(inferred)}) is none of glip-t, glip-t-a, glip-l; "
        "pass the model config explicitly (or use our .safetensors format, which stores it)"
    )


def _infer_architecture(state: Mapping[str, torch.Tensor]) -> GLIPConfig:
    """What the key names and shapes of an official state dict show (a "custom" config)."""
    try:
        patch = state["backbone.body.patch_embed.proj.weight"]
        words = state["language_backbone.body.model.embeddings.word_embeddings.weight"]
    except KeyError as error:
        raise CheckpointError(f"not a GLIP checkpoint: key {error} is missing") from None
    depths, heads = [], []
    for stage in range(8):
        blocks = [k for k in state if re.match(rf"^backbone\.body\.layers\.{stage}\.blocks\.\d+\.norm1\.weight$", k)]
        if not blocks:
            break
        depths.append(len(blocks))
        heads.append(state[f"backbone.body.layers.{stage}.blocks.0.attn.relative_position_bias_table"].shape[1])
    table = state["backbone.body.layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    window = (int(round(table ** 0.5)) + 1) // 2
    text_layers = len({k.split(".")[5] for k in state if k.startswith("language_backbone.body.model.encoder.layer.")})
    hidden = words.shape[1]
    tower = {int(k.split(".")[3]) for k in state if k.startswith("rpn.head.dyhead_tower.")}
    fusion = any(".b_attn." in k for k in state if k.startswith("rpn.head.dyhead_tower."))
    per_block = 3 if fusion else 1
    defaults = SwinConfig()
    swin = SwinConfig(embed_dim=patch.shape[0], depths=tuple(depths), num_heads=tuple(heads), window_size=window,
                      drop_path_rate=0.4 if patch.shape[0] >= 192 else defaults.drop_path_rate)
    text = TextConfig(vocab_size=words.shape[0], hidden_size=hidden, num_layers=text_layers,
                      num_heads=max(1, hidden // 64),
                      intermediate_size=state["language_backbone.body.model.encoder.layer.0.intermediate.dense.weight"].shape[0])
    head = HeadConfig(num_blocks=len(tower) // per_block, use_fusion=fusion, use_text_layers=fusion,
                      fused_dot_product=fusion)
    return GLIPConfig(name="custom", swin=swin, text=text, head=head)


def _widths_match(config: GLIPConfig, state: Mapping[str, torch.Tensor]) -> bool:
    """Head/FPN widths of a preset against the checkpoint's tensors."""
    box = state.get("rpn.head.bbox_pred.weight")
    lateral = state.get("backbone.fpn.fpn_inner4.weight")
    return (box is not None and box.shape[1] == config.head.channels
            and lateral is not None and lateral.shape[0] == config.fpn.out_channels)


def _architecture(config: GLIPConfig) -> tuple:
    s, t, h = config.swin, config.text, config.head
    return (s.embed_dim, tuple(s.depths), tuple(s.num_heads), s.window_size, t.hidden_size, t.num_layers,
            t.vocab_size, h.num_blocks, h.use_fusion, h.use_text_layers)


def convert_official_state_dict(state: Mapping[str, torch.Tensor], config: GLIPConfig) -> dict[str, torch.Tensor]:
    """Map official keys to ours; check the dropped anchor templates; raise on keys without a rule."""
    converted, unknown = {}, []
    for key, value in state.items():
        if _DROPPED.match(key):
            _check_anchor_template(key, value, config)
            continue
        ours = map_official_key(key, config.head)
        if ours is None:
            unknown.append(key)
        else:
            converted[ours] = value
    if unknown:
        raise CheckpointError(_mismatch_message(unexpected=unknown))
    return converted


def _check_anchor_template(key: str, value: torch.Tensor, config: GLIPConfig) -> None:
    match = re.match(r"^rpn\.anchor_generator\.cell_anchors\.(\d+)$", key)
    if not match:
        return
    level = int(match.group(1))
    head = config.head
    if level >= len(head.anchor_sizes):
        raise CheckpointError(f"checkpoint has anchors for level {level}; the model has {len(head.anchor_sizes)} levels")
    expected = cell_anchor(head.anchor_sizes[level], head.anchor_strides[level])
    if value.shape != expected.shape or not torch.allclose(value.float(), expected):
        raise CheckpointError(f"checkpoint anchor template {key} = {value.tolist()} differs from the config's "
                              f"{expected.tolist()}: the checkpoint was trained with other anchor settings")


def shorten_names(keys: list[str], limit: int = 20) -> str:
    """``"a, b, c, ... (N more)"``: the first ``limit`` names of a list for a message; "none" if empty."""
    if not keys:
        return "none"
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _mismatch_message(missing: list[str] = (), unexpected: list[str] = (),
                      shapes: list[str] = (), limit: int = 20) -> str:
    lines = ["checkpoint does not match the model:"]
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            lines.append(f"  {len(keys)} {title}: {shorten_names(list(keys), limit)}")
    lines.append("  check that --config names the checkpoint's model (glip-t, glip-t-a, glip-l) and that the file is complete")
    return "\n".join(lines)


def load_state_strict(model: GLIP, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` only if every key and shape matches (no partial loads)."""
    expected = dict(model.state_dict())
    if "prompt_embedding" in state and model.prompt_embedding is None:
        expected["prompt_embedding"] = state["prompt_embedding"]  # optional: created once checks pass
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(_mismatch_message(missing, unexpected, shapes))
    if "prompt_embedding" in state and model.prompt_embedding is None:
        model.enable_prompt_embedding(state["prompt_embedding"].shape[0])
    model.load_state_dict(state, strict=True)


@dataclass(frozen=True)
class SharedLoad:
    """What `load_shared_state` did: names copied, names of the model left as they were, names of
    the source that the model has not (or has in another shape)."""

    copied: list[str]
    kept: list[str]
    unused: list[str]


def load_shared_state(model: GLIP, state: Mapping[str, torch.Tensor]) -> SharedLoad:
    """Copy into ``model`` every tensor of ``state`` whose name and shape it has too (a related
    architecture, e.g. the fused model's weights for its no-fusion twin); nothing else changes.

    Raises `CheckpointError` when the two share no tensor at all (an unrelated checkpoint).
    """
    own = model.state_dict()
    copied = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    if not copied:
        raise CheckpointError("the checkpoint shares no tensor (same name and shape) with the model: "
                              "it is not a related architecture")
    with torch.no_grad():
        for key in copied:
            own[key].copy_(state[key])
    chosen = set(copied)
    return SharedLoad(copied, [k for k in own if k not in chosen], [k for k in state if k not in chosen])


def load_official(path: str | os.PathLike, config: GLIPConfig | str | None = None) -> GLIP:
    """Build a model from an official ``.pth``. ``config`` (preset name or config) is checked against
    the architecture the checkpoint shows; None = use what it shows."""
    state = read_official_state_dict(path)
    if config is None:
        config = infer_config(state)
    elif isinstance(config, str):
        config = get_config(config)
    inferred = _infer_architecture(state)
    for name in ("glip-t", "glip-t-a", "glip-l"):
        if _architecture(get_config(name)) == _architecture(inferred):
            inferred.name = name
    if _architecture(config) != _architecture(inferred):
        raise CheckpointError(
            f"{path} holds a {inferred.name} model ({_describe(inferred)}) but config '{config.name}' "
            f"({_describe(config)}) was asked for: pass --config {inferred.name if inferred.name in PRESETS else '...'}"
        )
    model = GLIP(config)
    load_state_strict(model, convert_official_state_dict(state, config))
    return model


def _describe(config: GLIPConfig) -> str:
    s, h = config.swin, config.head
    return (f"Swin embed {s.embed_dim} depths {tuple(s.depths)} window {s.window_size}, {h.num_blocks} head blocks, "
            f"fusion {'on' if h.use_fusion else 'off'}")


TEXT_PREFIX = "text_encoder."


def save_glip(model: GLIP, path: str | os.PathLike, extra_metadata: dict[str, str] | None = None,
              include_text_encoder: bool | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write our format: ``path`` (.safetensors, config also in its metadata) and ``path`` with .json.

    ``include_text_encoder=False`` leaves out the text encoder when it is an unchanged pretrained
    one (``config.text.pretrained``), which loading takes from its own package again. Default: left
    out exactly when the config names pretrained text weights and they are unchanged.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"our checkpoints are .safetensors files; got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(model.config.to_dict(), indent=2)
    metadata = {"format": FORMAT_TAG, "config": config_json, **(extra_metadata or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if include_text_encoder is None:
        include_text_encoder = model.config.text.pretrained is None or not _text_encoder_unchanged(model, state)
    if not include_text_encoder:
        if model.config.text.pretrained is None:
            raise ValueError("the text encoder can only be left out when config.text.pretrained names its weights")
        state = {k: v for k, v in state.items() if not k.startswith(TEXT_PREFIX)}
        metadata["text_encoder"] = f"pretrained:{model.config.text.pretrained}"
    if dtype is not None:
        # Smaller files (e.g. float16 for a shipped model); loading casts back to the model's dtype.
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        metadata["stored_dtype"] = str(dtype).removeprefix("torch.")
    write_atomically(path, lambda temporary: save_file(state, str(temporary), metadata=metadata))
    write_atomically(path.with_suffix(".json"), lambda temporary: temporary.write_text(config_json + "\n"))
    return path


def load_glip(path: str | os.PathLike, config: GLIPConfig | str | None = None) -> GLIP:
    """Load one of our ``.safetensors`` checkpoints (config from its metadata or the .json beside it),
    or an official ``.pth`` (anything else)."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors"))
        if len(candidates) != 1:
            raise CheckpointError(f"{path} is a directory with {len(candidates)} .safetensors files; name one")
        path = candidates[0]
    if path.suffix != ".safetensors":
        return load_official(path, config)
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - report any parse failure as a bad file
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from error
    stored = _stored_config(path, metadata)
    named = isinstance(config, str)
    if config is None:
        config = stored
    elif named:
        config = get_config(config)
    if stored is not None and _architecture(stored) != _architecture(config):
        raise CheckpointError(f"{path} holds a '{stored.name}' model but config '{config.name}' was asked for")
    if named and stored is not None:
        config = stored  # a name only checks the architecture; the file's config has every setting (skips, input size)
    if config is None:
        raise CheckpointError(f"{path} has no config (no metadata, no {path.with_suffix('.json').name}); pass --config")
    model = GLIP(config)
    if metadata.get("text_encoder", "").startswith("pretrained:"):
        # The text encoder was left out: GLIP(config) has just loaded it from its package.
        state = {**{k: v for k, v in model.state_dict().items() if k.startswith(TEXT_PREFIX)}, **state}
    load_state_strict(model, state)
    return model


def _text_encoder_unchanged(model: GLIP, state: Mapping[str, torch.Tensor]) -> bool:
    from glip.modeling.text_encoder import TextEncoder

    reference = TextEncoder(model.config.text).state_dict()
    # A tolerance, because an EMA of frozen weights drifts by float rounding only.
    return all(torch.allclose(state[TEXT_PREFIX + k].float(), v.float(), rtol=0.0, atol=1e-6)
               for k, v in reference.items())


def _stored_config(path: Path, metadata: dict[str, str]) -> GLIPConfig | None:
    if "config" in metadata:
        return GLIPConfig.from_dict(json.loads(metadata["config"]))
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return GLIPConfig.from_dict(json.loads(sidecar.read_text()))
    return None
