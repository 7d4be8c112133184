"""The training configuration: typed sections read from YAML, with ``key.sub=value`` overrides.

Every field has a default; the defaults are the official GLIP-T recipe where one exists (AdamW
1e-4 / language 1e-5, weight decay 1e-4, steps at 67 % and 89 %, clip 1.0, EMA 0.999, multi-scale
480-800). A YAML file only needs what differs::

    model: {config: glip-tiny}
    data:
      datasets:
        - {type: coco, annotations: train.json, images: train/}
    train: {max_steps: 1000, batch_size: 4}
    output: {dir: runs/tiny}

Example:
    >>> config = load_train_config("tiny.yaml", ["optim.lr=1e-3", "train.ema_decay=null"])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATASET_TYPES = ("coco", "odvg", "mdetr", "pseudo")
AMP_MODES = ("off", "bf16", "fp16", "auto")
SCHEDULES = ("step", "cosine")
PHRASE_CE_CANDIDATES = ("phrases", "tokens")


class TrainConfigError(ValueError):
    """A training configuration that cannot be used (unknown key, wrong type, bad value)."""


@dataclass
class ModelSection:
    config: str = "glip-tiny"  # a preset name (glip-t, glip-tiny, ...) or a path to a GLIP config JSON
    # Changes to the model config, as a nested dict of its sections, e.g. {"text": {"dropout": 0.0}}.
    overrides: dict[str, Any] = field(default_factory=dict)
    # Initial weights: our .safetensors or an official .pth (None = random init / the config's text weights).
    weights: str | None = None
    # Initial weights from a checkpoint of a *related* architecture (e.g. glip-nano for
    # glip-nano-nofusion): every tensor whose name and shape both models have is copied, the rest
    # keep their initialisation, and both lists are logged. Exclusive with ``weights``.
    init_from: str | None = None


@dataclass
class PackingSection:
    # Caption packing, the official recipe for caption data: other records' captions join a
    # sample's caption as negatives (their boxes never), within the token window, order shuffled.
    enabled: bool | None = None  # None = on for pseudo sources, off for the others (coco never packs)
    no_negatives_prob: float = 0.4  # probability of no added caption (official 0.4)
    all_negatives_prob: float = 0.3  # probability of max_negatives captions; else uniform 1..max_negatives-1
    max_negatives: int = 20  # official 20


@dataclass
class DatasetSection:
    # coco (COCO detection JSON) | odvg (grounding JSONL) | mdetr (MDETR-style COCO JSON) |
    # pseudo (pseudo-labelled ODVG shards written by `glip label`, each region with its score)
    type: str = "coco"
    annotations: str = ""  # the annotation file; pseudo: a directory of .jsonl shards or a glob of them
    images: str = ""  # the directory the annotation's file names are relative to; pseudo: "" = each shard's folder
    weight: float = 1.0  # sampling weight among the datasets (only used when there are several)
    max_prompt_categories: int = 85  # detection prompts: positives plus random negatives, official 85
    on_error: str = "skip"  # an unreadable image or bad record: "skip" (logged) or "raise"
    # pseudo: regions scored at or below it are dropped when read, then records left without one
    # (None keeps every region the labelling kept)
    min_score: float | None = None
    packing: PackingSection = field(default_factory=PackingSection)


@dataclass
class DataSection:
    datasets: list[DatasetSection] = field(default_factory=list)


@dataclass
class InputSection:
    # Shorter side of a training image, drawn from this list per image (official multi-scale 480-800).
    min_sizes: list[int] = field(default_factory=lambda: [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800])
    max_size: int = 1333  # cap on the longer side
    flip_prob: float = 0.5  # horizontal flip (the prompt's "left"/"right" are swapped by the data layer)


@dataclass
class OptimSection:
    lr: float = 1e-4  # AdamW, everything but the language backbone
    language_lr: float = 1e-5  # the language backbone (text_encoder.*), official LANG_LR
    # Learning-rate factors for parameters under a name prefix, e.g. {"head.visual_skip": 20.0}:
    # new zero-initialised layers added to a trained model can learn faster than the rest.
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float | None = 1.0  # max global gradient norm over the whole model; None = no clipping
    schedule: str = "step"  # "step" (multiply by gamma at each milestone) or "cosine" (to min_lr_factor)
    warmup_steps: int = 2000  # linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.001
    step_milestones: list[float] = field(default_factory=lambda: [0.67, 0.89])  # fractions of max_steps
    gamma: float = 0.1
    min_lr_factor: float = 0.0  # cosine: the final learning rate as a fraction of lr


@dataclass
class LossSection:
    # Weights of the unweighted GLIPLoss terms; the training loss is their weighted sum.
    token: float = 1.0
    box: float = 2.0  # official
    centerness: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    atss_top_k: int = 9
    # GLIPv2's pre-training terms, off at 0. Each needs its head in the model config
    # (model.overrides: {pretraining: {inter_image: true, mlm: true}}); the official weight is 1.0 for both.
    inter_image: float = 0.0  # inter-image region-word contrastive loss (official SHALLOW_CONTRASTIVE_LOSS_WEIGHT)
    mlm: float = 0.0  # masked language modelling loss (official MLM_LOSS_COEF)
    inter_image_max_positives: int = 100  # positive anchors per image, at most (official SHALLOW_MAX_POSITIVE_ANCHORS)
    mlm_probability: float = 0.15  # of masking each eligible token (BERT, official)
    # Mask only tokens of phrases that have a box (official MLM_LOSS_FOR_ONLY_POSITIVES, default True).
    mlm_only_positive_spans: bool = True
    # GLIPv2's language-aware instance segmentation (`glip.training.mask_loss`), off at 0; needs the
    # model's mask head (model.overrides: {mask_head: {enabled: true}}) and data with instance masks.
    # The official Mask R-CNN weight is 1.0.
    mask: float = 0.0
    mask_box_jitter: float = 0.0  # RoI coordinates move by up to this fraction of the box size (0 = GT boxes)
    # Cross-entropy over the prompt's names for each positive anchor (`glip.training.loss.phrase_cross_entropy`),
    # off at 0. Ours, not in GLIP: it trains the detection scores to rank an object's own name first.
    phrase_ce: float = 0.0
    # What its softmax ranks: "phrases" (a name of several word pieces is one candidate, scored by
    # the mean of its pieces' logits) or "tokens" (every piece its own candidate; biased towards
    # one-piece names, kept to reproduce configs/naming-stage-ce.yaml).
    phrase_ce_candidates: str = "phrases"


@dataclass
class TrainSection:
    max_steps: int = 1000  # optimizer steps
    batch_size: int = 2  # images per process per micro-batch
    grad_accumulation: int = 1  # micro-batches per optimizer step
    amp: str = "auto"  # "off" | "bf16" | "fp16" (CUDA only) | "auto" (CUDA: bf16 if supported else fp16; CPU: off)
    ema_decay: float | None = 0.999  # None = no EMA
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes, e.g. ["backbone", "text_encoder"]
    seed: int = 0
    num_workers: int = 2  # data loader worker processes per training process
    device: str | None = None  # "cpu", "cuda" (each torchrun process takes cuda:LOCAL_RANK); None = cuda if available
    resume: bool = False  # continue from the latest checkpoint in output.dir
    find_unused_parameters: bool = False  # DDP; only needed if some trainable parameter gets no gradient


@dataclass
class OutputSection:
    dir: str = "runs/glip"
    checkpoint_every: int = 500  # steps between training checkpoints (one is always written at the end)
    keep_last: int = 3  # training checkpoints kept (older ones are deleted)
    log_every: int = 20  # steps between metric records
    tensorboard: bool = True  # if the tensorboard package is installed
    progress: bool = True  # tqdm progress bar (main process only)


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    input: InputSection = field(default_factory=InputSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        config = _build(cls, data, "")
        validate(config)
        return config

    def loss_weights(self) -> dict[str, float]:
        """The weight of each term the training loss sums; the optional terms (weight 0 = off) only when on."""
        weights = {"token": self.loss.token, "box": self.loss.box, "centerness": self.loss.centerness}
        for name in ("inter_image", "mlm", "mask", "phrase_ce"):
            if getattr(self.loss, name) > 0:
                weights[name] = getattr(self.loss, name)
        return weights


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _convert(annotation: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a field annotation, building nested dataclasses; ints pass as floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except TrainConfigError as error:
                errors.append(str(error))
        raise TrainConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of "
                               f"{_type_name(annotation)}")
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise TrainConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_convert(item, v, f"{where}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise TrainConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(annotation) or (Any, Any)
        return {_convert(key_type, k, where): _convert(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation is int and isinstance(value, bool) or not isinstance(value, annotation):
        raise TrainConfigError(f"{where}: expected {_type_name(annotation)}, got {value!r}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TrainConfigError(f"{where or 'config'}: expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        place = f"in '{where}'" if where else "at the top level"
        raise TrainConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(str, unknown))} {place}; "
                               f"valid: {', '.join(names)}")
    kwargs = {key: _convert(hints[key], value, f"{where}.{key}" if where else key) for key, value in data.items()}
    return cls(**kwargs)


def validate(config: TrainConfig) -> None:
    """Value checks that types cannot express."""
    def need(condition: bool, message: str) -> None:
        if not condition:
            raise TrainConfigError(message)

    for index, dataset in enumerate(config.data.datasets):
        need(dataset.type in DATASET_TYPES, f"data.datasets.{index}.type must be one of {', '.join(DATASET_TYPES)}, "
                                            f"got '{dataset.type}'")
        need(dataset.on_error in ("skip", "raise"), f"data.datasets.{index}.on_error must be skip or raise")
        need(dataset.weight > 0, f"data.datasets.{index}.weight must be positive")
        _validate_pseudo_fields(dataset, f"data.datasets.{index}", need)
    need(not (config.model.weights and config.model.init_from),
         "model.weights and model.init_from are exclusive: weights loads a checkpoint of this very architecture, "
         "init_from copies the shared tensors of a related one")
    train, optim, output = config.train, config.optim, config.output
    need(train.amp in AMP_MODES, f"train.amp must be one of {', '.join(AMP_MODES)}, got '{train.amp}'")
    need(optim.schedule in SCHEDULES, f"optim.schedule must be one of {', '.join(SCHEDULES)}, got '{optim.schedule}'")
    need(train.max_steps > 0, "train.max_steps must be positive")
    need(train.batch_size > 0, "train.batch_size must be positive")
    need(train.grad_accumulation > 0, "train.grad_accumulation must be positive")
    need(train.ema_decay is None or 0.0 < train.ema_decay < 1.0, "train.ema_decay must be in (0, 1) or null")
    need(train.num_workers >= 0, "train.num_workers must be >= 0")
    need(len(optim.betas) == 2, "optim.betas needs two values")
    need(optim.warmup_steps >= 0, "optim.warmup_steps must be >= 0")
    need(all(factor > 0 for factor in optim.lr_multipliers.values()), "optim.lr_multipliers factors must be positive")
    need(all(0.0 <= m <= 1.0 for m in optim.step_milestones), "optim.step_milestones are fractions of max_steps (0..1)")
    need(optim.grad_clip is None or optim.grad_clip > 0, "optim.grad_clip must be positive or null")
    need(output.checkpoint_every > 0, "output.checkpoint_every must be positive")
    need(output.keep_last > 0, "output.keep_last must be positive")
    need(output.log_every > 0, "output.log_every must be positive")
    need(len(config.input.min_sizes) > 0, "input.min_sizes needs at least one size")
    loss = config.loss
    need(loss.inter_image >= 0 and loss.mlm >= 0, "loss.inter_image and loss.mlm are weights: 0 (off) or positive")
    need(loss.mask >= 0, "loss.mask is a weight: 0 (off) or positive")
    need(loss.phrase_ce >= 0, "loss.phrase_ce is a weight: 0 (off) or positive")
    need(loss.phrase_ce_candidates in PHRASE_CE_CANDIDATES,
         f"loss.phrase_ce_candidates must be one of {', '.join(PHRASE_CE_CANDIDATES)}, got {loss.phrase_ce_candidates!r}")
    need(0.0 <= loss.mask_box_jitter < 0.5, f"loss.mask_box_jitter must be in [0, 0.5), got {loss.mask_box_jitter}")
    need(loss.inter_image_max_positives >= 1, "loss.inter_image_max_positives must be >= 1")
    need(0.0 < loss.mlm_probability < 1.0, f"loss.mlm_probability must be in (0, 1), got {loss.mlm_probability}")


def _validate_pseudo_fields(dataset: DatasetSection, where: str, need: Callable[[bool, str], None]) -> None:
    """``min_score`` (pseudo sources only) and the caption packing settings."""
    need(dataset.min_score is None or dataset.type == "pseudo",
         f"{where}.min_score filters pseudo-labelled regions: it applies to type pseudo only, not {dataset.type}")
    need(dataset.min_score is None or 0.0 <= dataset.min_score < 1.0, f"{where}.min_score must be in [0, 1) or null")
    packing = dataset.packing
    need(not (packing.enabled and dataset.type == "coco"),
         f"{where}.packing.enabled: detection prompts (type coco) are not captions; packing applies to "
         "odvg, mdetr and pseudo")
    need(0.0 <= packing.no_negatives_prob <= 1.0 and 0.0 <= packing.all_negatives_prob <= 1.0
         and packing.no_negatives_prob + packing.all_negatives_prob <= 1.0,
         f"{where}.packing: no_negatives_prob and all_negatives_prob are probabilities whose sum is at most 1")
    need(packing.max_negatives >= 1, f"{where}.packing.max_negatives must be >= 1")


def apply_override(data: dict[str, Any], override: str, root: type | None = None) -> None:
    """Apply one ``a.b.c=value`` to a config dict in place; the value is read as YAML (``null``,
    ``1e-3``, ``[1, 2]``). Integer parts index lists: ``data.datasets.0.weight=2``. ``root``: the
    dataclass the dict describes (default `TrainConfig`), whose fields the keys are checked against."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise TrainConfigError(f"override '{override}' is not key=value (e.g. optim.lr=1e-3)")
    value = yaml.safe_load(text) if text.strip() else None
    parts = key.strip().split(".")
    node: Any = data
    cls: Any = root or TrainConfig  # the dataclass describing ``node`` (None inside free dicts and plain lists)
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        path = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise TrainConfigError(f"override '{key}': '{path}' needs an index below {len(node)}")
            index, child = int(part), cls
        else:
            index, child = part, None
            if cls is not None:
                names = [f.name for f in dataclasses.fields(cls)]
                if part not in names:
                    raise TrainConfigError(f"unknown key '{path}' in override '{override}'; valid: {', '.join(names)}")
                annotation = typing.get_type_hints(cls)[part]
                child = annotation if dataclasses.is_dataclass(annotation) else _list_item_class(annotation)
                if not last and typing.get_origin(annotation) is list:
                    node.setdefault(part, [])
        if last:
            node[index] = value
            return
        if not isinstance(node, list) and not isinstance(node.get(index), (dict, list)):
            node[index] = {}
        node, cls = node[index], child


def _list_item_class(annotation: Any) -> Any:
    """The dataclass held by a ``list[...]`` field (None for anything else)."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if dataclasses.is_dataclass(item):
            return item
    return None


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      config_class: type | None = None) -> TrainConfig:
    """Read a YAML training config (None = all defaults) and apply ``key.sub=value`` overrides.
    Relative paths inside it are relative to the current directory, like those on the command line.
    ``config_class``: another config dataclass with ``from_dict`` (default `TrainConfig`)."""
    config_class = config_class or TrainConfig
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TrainConfigError(f"training config {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise TrainConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise TrainConfigError(f"{path} must hold a mapping of sections ({', '.join(_section_names(config_class))})")
        data = loaded or {}
    if not isinstance(data.get("data", {}), dict):
        listing = " with a 'datasets' list" if config_class is TrainConfig else ""
        raise TrainConfigError(f"'data' must be a mapping{listing}")
    for override in overrides or []:
        apply_override(data, override, root=config_class)
    return config_class.from_dict(data)


def _section_names(config_class: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class)]
