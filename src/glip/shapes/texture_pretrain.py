"""Pretrain the texture skip of a glip-nano checkpoint on the fill words of grounding phrases.

Why: trained only through the grounding loss, the texture skip never learnt fill (solid, striped,
dotted). The alignment logit is bilinear, <visual, text>, and at the start neither side tells the
fill words apart, so the gradient that would separate them is small and its sign noisy: a saddle.
Taught directly, the same filters learn fill in a few hundred steps. This step does that with the
grounding data alone: every phrase naming exactly one of the words ("a small striped heart") is a
region labelled with that word; a linear classifier reads the texture responses averaged over each
cell of the central part of the region (P3 and P4 cells, as the head pools them) and the filters
learn through it. The backbone stays fixed. The classifier is thrown away; the filters are written
back into the checkpoint and the skip's projection is zeroed, so the model computes exactly what it
did before the texture skip existed, and the grounding training that follows binds the responses to
the words (configs/glip-nano-stage5-fill.yaml). It sits between stages 4 and 5 of the shipped
glip-nano::

    glip shapes texture-pretrain --weights runs/glip-nano-stage4/model.safetensors \
        --grounding data/shapes/attributes-train data/shapes/ground-train \
        --val data/shapes-val/attributes --steps 1000 --out runs/glip-nano-stage4-textures.safetensors

Example:
    >>> result = pretrain_checkpoint("stage4.safetensors", ["data/shapes/attributes-train"],
    ...                              "textures.safetensors", steps=1000)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from glip.checkpoint import load_glip, save_glip
from glip.images import load_image, prepare_images
from glip.modeling.glip import GLIP
from glip.shapes.vocabulary import FILLS

logger = logging.getLogger(__name__)
FILL_WORDS = FILLS  # solid, striped, dotted
POOL_STRIDES = (8, 16)  # the head levels whose cells cover objects of the shapes world (P3, P4)
CENTRAL = 0.3  # a cell counts when its centre is this far inside the box on every side (fraction)


@dataclass
class Region:
    """One labelled region: ``box`` xyxy in the image's pixels, ``label`` an index into the words."""

    box: tuple[float, float, float, float]
    label: int


@dataclass
class LabelledImage:
    """A picture and its labelled regions."""

    path: Path
    regions: list[Region] = field(default_factory=list)


def phrase_regions(root: Path, words: tuple[str, ...]) -> list[LabelledImage]:
    """Regions of ``root/grounding.jsonl`` whose phrase names exactly one of ``words``."""
    images = []
    with open(root / "grounding.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            regions = []
            for region in record["grounding"]["regions"]:
                named = set(region["phrase"].lower().split()) & set(words)
                if len(named) == 1:
                    regions.append(Region(tuple(region["bbox"]), words.index(named.pop())))
            if regions:
                images.append(LabelledImage(root / record["filename"], regions))
    return images


def scene_regions(root: Path, words: tuple[str, ...], attribute: str = "fill") -> list[LabelledImage]:
    """Every object of ``root/scenes.jsonl`` labelled by its ``attribute`` (held-out measurement only)."""
    images = []
    with open(root / "scenes.jsonl", encoding="utf-8") as handle:
        for line in handle:
            scene = json.loads(line)
            unknown = {o[attribute] for o in scene["objects"]} - set(words)
            if unknown:
                raise ValueError(f"{root / 'scenes.jsonl'}: {attribute} {sorted(unknown)} is not among the words "
                                 f"{list(words)}; pass every {attribute} of the split as a word")
            regions = [Region(tuple(o["bbox"]), words.index(o[attribute])) for o in scene["objects"]]
            images.append(LabelledImage(root / scene["file_name"], regions))
    return images


def first_stage(model: GLIP, path: Path, min_size: int) -> tuple[torch.Tensor, float]:
    """The backbone's first stage for one picture -> ([1, C, H/4, W/4], input pixels per image pixel)."""
    picture = load_image(path)
    batch = prepare_images([picture], replace(model.config.input, min_size=min_size, max_size=2 * min_size))
    with torch.no_grad():
        (first,) = model.backbone(batch.tensor, num_stages=1)  # [1, C, H/4, W/4]
    return first, batch.image_sizes[0][0] / picture.height


def central_cells(responses: torch.Tensor, regions: list[Region], scale: float,
                  ) -> list[tuple[torch.Tensor, int]]:
    """responses [1, W, H/4, W/4] -> per region: (pooled responses of its central cells [n, W], label)."""
    found = []
    for stride in POOL_STRIDES:
        rows, cols = responses.shape[-2] * 4 // stride, responses.shape[-1] * 4 // stride
        pooled = F.adaptive_avg_pool2d(responses, (rows, cols))[0]  # [W, rows, cols]
        centres_x = (torch.arange(cols) + 0.5) * stride
        centres_y = (torch.arange(rows) + 0.5) * stride
        for region in regions:
            x0, y0, x1, y1 = (v * scale for v in region.box)
            if min(x1 - x0, y1 - y0) < 1.5 * stride:
                continue  # the object is a level below
            in_x = (centres_x > x0 + CENTRAL * (x1 - x0)) & (centres_x < x1 - CENTRAL * (x1 - x0))
            in_y = (centres_y > y0 + CENTRAL * (y1 - y0)) & (centres_y < y1 - CENTRAL * (y1 - y0))
            if not in_x.any() or not in_y.any():
                in_x = torch.zeros(cols, dtype=torch.bool)
                in_y = torch.zeros(rows, dtype=torch.bool)
                in_x[min(cols - 1, int((x0 + x1) / 2 / stride))] = True
                in_y[min(rows - 1, int((y0 + y1) / 2 / stride))] = True
            cells = pooled[:, in_y][:, :, in_x].flatten(1).t()  # [n, W]
            found.append((cells, region.label))
    return found


def accuracy(model: GLIP, classifier: nn.Linear, images: list[LabelledImage], min_size: int) -> float:
    """Share of regions whose cells' mean classifier logits name the right word."""
    texture = model.head.texture_skip
    hits = total = 0
    with torch.no_grad():
        for image in images:
            stage, scale = first_stage(model, image.path, min_size)
            responses = texture(stage)
            for region in image.regions:
                cells = central_cells(responses, [region], scale)
                if cells:
                    logits = torch.cat([classifier(c) for c, _ in cells]).mean(0)
                    hits += int(logits.argmax().item() == region.label)
                    total += 1
    return hits / max(total, 1)


def pretrain(model: GLIP, images: list[LabelledImage], num_words: int, steps: int, batch_size: int = 8,
             lr: float = 1e-3, min_sizes: tuple[int, ...] = (288, 320, 352), seed: int = 0,
             progress: bool = True) -> nn.Linear:
    """Train ``model.head.texture_skip.filters`` (in place) with a linear word classifier; returns it."""
    if model.head.texture_skip is None:
        raise ValueError("this model has no texture skip: build it with head.texture_skip_channels > 0")
    if not images:
        raise ValueError("no region names exactly one of the words: nothing to learn from")
    generator = random.Random(seed)
    torch.manual_seed(seed)
    filters = model.head.texture_skip.filters
    classifier = nn.Linear(model.head.texture_skip.projection.in_channels, num_words)
    optimizer = torch.optim.AdamW([*filters.parameters(), *classifier.parameters()], lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=0.05 * lr)
    bar = tqdm(range(steps), desc="texture pretraining", disable=not progress)
    for _ in bar:
        features, labels = [], []
        for image in generator.sample(images, min(batch_size, len(images))):
            stage, scale = first_stage(model, image.path, generator.choice(min_sizes))
            for cells, label in central_cells(filters(stage), image.regions, scale):
                features.append(cells)
                labels += [label] * len(cells)
        if not features:
            continue
        loss = F.cross_entropy(classifier(torch.cat(features)), torch.tensor(labels))
        if not torch.isfinite(loss):
            raise FloatingPointError("texture pretraining loss is not finite; lower --lr")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    nn.init.zeros_(model.head.texture_skip.projection.weight)
    nn.init.zeros_(model.head.texture_skip.projection.bias)
    return classifier


@dataclass
class TexturePretrainResult:
    """What ``pretrain_checkpoint`` wrote and measured."""

    output: Path  # the checkpoint written (.safetensors, a .json config beside it)
    num_regions: int  # labelled regions learnt from
    num_images: int  # pictures holding them
    held_out_accuracy: float | None  # share of held-out objects whose word is named right (None: no ``val``)


def pretrain_checkpoint(weights: str | os.PathLike, grounding: list[str | os.PathLike], output: str | os.PathLike,
                        val: str | os.PathLike | None = None, words: tuple[str, ...] = FILL_WORDS,
                        steps: int = 800, lr: float = 1e-3, seed: int = 0,
                        progress: bool = False) -> TexturePretrainResult:
    """Load ``weights``, pretrain its texture filters on the phrases of every ``grounding`` folder
    (each holding ``grounding.jsonl``), measure them on the shapes split ``val`` if given, and write
    the model to ``output`` (float32, the skip's projection zeroed)."""
    if len(words) < 2:
        raise ValueError(f"texture pretraining needs at least two words to tell apart, got {list(words)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if Path(output).suffix != ".safetensors":
        raise ValueError(f"the output is a .safetensors file; got {output}")
    model = load_glip(weights).float().eval()
    images = [image for root in grounding for image in phrase_regions(Path(root), words)]
    num_regions = sum(len(image.regions) for image in images)
    logger.info("%d regions in %d pictures name one of %s", num_regions, len(images), words)
    val_images = scene_regions(Path(val), words) if val is not None else None  # read first: fail before training
    classifier = pretrain(model, images, len(words), steps, lr=lr, seed=seed, progress=progress)
    held_out = None
    if val_images is not None:
        held_out = accuracy(model, classifier, val_images, min_size=320)
        logger.info("held-out accuracy (%s): %.3f", val, held_out)
    path = save_glip(model, output, {"source": f"texture pretraining of {Path(weights).name}",
                                     "steps": str(steps), "seed": str(seed)})
    return TexturePretrainResult(path, num_regions, len(images), held_out)
