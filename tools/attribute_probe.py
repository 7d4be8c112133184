"""Where does a model lose an object's colour (or fill)? Linear probes along the head, and Recall@1 by attribute.

Diagnostics for the shapes world's attribute binding (``attributes`` split):

1. ``probe``: for every object of the first N scenes, the feature of its box (``roi_align`` to one
   cell, the P3 level) is taken at the FPN output and after every fusion layer and DyHead block of
   the head; a linear classifier trained on 70% of the objects predicts the attribute of the other
   30%. Accuracy near chance at a stage means the stage's features no longer carry the attribute,
   so no prompt word can be bound to it there.
2. ``centres``: the same question one cell at each object's centre, from the input pixel through
   every Swin stage to the FPN and the head's output.
3. ``text``: the cosine of corresponding tokens of two captions ("a black dotted star", "a red solid
   star") at the text encoder's output, at the dot product's text side, and after its projection,
   where it meets the image. Near 1 at the head means the model no longer tells the words apart.
4. ``recall``: Recall@1 of a grounding predictions file (``glip eval`` writes ``predictions.json``)
   split by which attributes differ between the objects of a scene and which the phrase names.

Run::

    python tools/attribute_probe.py probe --weights src/glip/weights/glip-nano.safetensors \\
        --data data/shapes-val/attributes --attribute colour
    python tools/attribute_probe.py probe --fresh-head --data data/shapes-val/attributes
    python tools/attribute_probe.py centres --weights runs/glip-nano-stage2.safetensors --attribute colour
    python tools/attribute_probe.py text --weights runs/glip-nano-stage2.safetensors
    python tools/attribute_probe.py recall --data data/shapes-val/attributes --predictions glip_eval/predictions.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torchvision

from glip.images import prepare_images
from glip.modeling import GLIP
from glip.predictor import GLIPPredictor
from glip.shapes.vocabulary import ATTRIBUTES, COLOURS, FILLS, SHAPES, SIZES
from glip.tokenizer import load_tokenizer

VALUES = {"colour": tuple(COLOURS), "fill": FILLS, "size": SIZES, "shape": SHAPES}
P3_STRIDE = 8


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_features(weights: str, data: Path, num_scenes: int, attribute: str,
                   fresh_head: bool = False, only: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """{stage name: [N, C] box features}, and the attribute's value index of each object ``[N]``.

    ``only``: keep the objects with one of these values (e.g. ``("hexagon", "circle")``); all when empty.

    ``fresh_head``: replace the trained head by a newly initialised one (seed 0), to tell what the
    head's structure loses from what its training taught it to drop.
    """
    model = GLIPPredictor.from_pretrained(weights, device="cpu").model.eval()
    if fresh_head:
        torch.manual_seed(0)
        model.head.load_state_dict(GLIP(model.config).head.state_dict())
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, inputs, output):  # fusion returns (levels, text); a DyHead block returns levels
            levels = output[0] if isinstance(output, tuple) else output
            captured[name] = levels[0]  # P3: [1, C, H, W]
        return hook

    for index, block in enumerate(model.head.blocks):
        if block.fusion is not None:
            block.fusion.register_forward_hook(keep(f"block {index} fusion"))
        block.dyconv.register_forward_hook(keep(f"block {index} DyHead"))
    prompt = load_tokenizer()("an object", return_tensors="pt")
    features: dict[str, list[torch.Tensor]] = defaultdict(list)
    labels = []
    for scene in read_jsonl(data / "scenes.jsonl")[:num_scenes]:
        batch = prepare_images([data / scene["file_name"]], model.config.input)
        captured.clear()
        with torch.no_grad():
            output = model(batch.tensor, prompt["input_ids"], prompt["attention_mask"])
        stages = {"FPN P3": output.image.levels[0], **captured}
        scale = batch.image_sizes[0][0] / batch.original_sizes[0][0]
        objects = [obj for obj in scene["objects"] if not only or obj[attribute] in only]
        if not objects:
            continue
        boxes = torch.tensor([obj["bbox"] for obj in objects], dtype=torch.float32) * scale  # [K, 4]
        for name, level in stages.items():
            pooled = torchvision.ops.roi_align(level, [boxes], output_size=1, spatial_scale=1 / P3_STRIDE, aligned=True)
            features[name].extend(pooled.flatten(1))  # K x [C]
        labels.extend(VALUES[attribute].index(obj[attribute]) for obj in objects)
    return {name: torch.stack(rows) for name, rows in features.items()}, torch.tensor(labels)


def centre_features(weights: str | None, data: Path, num_scenes: int, attribute: str,
                    min_visible: float = 0.9) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Like `stage_features`, but one cell at each object's centre, from the pixels up: the input
    pixel, every Swin stage, FPN P3/P4 and the head's output P3/P4 (objects at least
    ``min_visible`` visible, so the centre is the object's)."""
    model = GLIPPredictor.from_pretrained(weights, device="cpu").model.eval()
    prompt = load_tokenizer()("an object", return_tensors="pt")
    features: dict[str, list[torch.Tensor]] = defaultdict(list)
    labels = []
    for scene in read_jsonl(data / "scenes.jsonl")[:num_scenes]:
        batch = prepare_images([data / scene["file_name"]], model.config.input)
        with torch.no_grad():
            output = model(batch.tensor, prompt["input_ids"], prompt["attention_mask"])
        maps = {"pixel": (batch.tensor, 1)}
        maps.update({f"Swin stage {i}": (stage, 4 * 2 ** i) for i, stage in enumerate(output.image.stages)})
        for level in (0, 1):
            maps[f"FPN P{level + 3}"] = (output.image.levels[level], P3_STRIDE * 2 ** level)
            maps[f"head P{level + 3}"] = (output.head.visual[level], P3_STRIDE * 2 ** level)
        scale = batch.image_sizes[0][0] / batch.original_sizes[0][0]
        for obj in scene["objects"]:
            if obj["visible"] < min_visible:
                continue
            x0, y0, x1, y1 = (v * scale for v in obj["bbox"])
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            for name, (level, stride) in maps.items():
                features[name].append(level[0, :, int(cy // stride), int(cx // stride)])
            labels.append(VALUES[attribute].index(obj[attribute]))
    return {name: torch.stack(rows) for name, rows in features.items()}, torch.tensor(labels)


def text_similarity(weights: str | None, data: Path,
                    captions: tuple[str, str]) -> list[tuple[str, float, float, float]]:
    """Cosine of corresponding tokens of two one-phrase captions on a scene of ``data``: at the text
    encoder's output, at the dot product's text side, and after its normalisation and projection
    (what each image location's feature is multiplied with)."""
    predictor = GLIPPredictor.from_pretrained(weights, device="cpu")
    model = predictor.model.eval()
    scene = read_jsonl(data / "scenes.jsonl")[0]
    batch = prepare_images([data / scene["file_name"]], model.config.input)
    tokenizer = load_tokenizer()
    outputs = []
    for caption in captions:
        encoded = tokenizer(caption, return_tensors="pt")
        with torch.no_grad():
            outputs.append(model(batch.tensor, encoded["input_ids"], encoded["attention_mask"]))
    tokens = [tokenizer.convert_ids_to_tokens(tokenizer(c)["input_ids"]) for c in captions]
    if len(tokens[0]) != len(tokens[1]):
        raise SystemExit("the two captions must have the same number of tokens")
    def dot_product_text(output) -> torch.Tensor:  # what VLHead normalises and projects: [L, D]
        return model.head.dot_product_text(output.head.text, output.text)[0]

    first, second = outputs
    encoder = torch.cosine_similarity(first.text.embedded[0], second.text.embedded[0], dim=-1)
    with torch.no_grad():
        texts = dot_product_text(first), dot_product_text(second)
        head = torch.cosine_similarity(*texts, dim=-1)
        projected = [model.head.project_text(t)[1] for t in texts]  # what meets the image: [L, C]
        after = torch.cosine_similarity(*projected, dim=-1)
    return [(f"{a}/{b}", float(e), float(h), float(q))
            for a, b, e, h, q in zip(*tokens, encoder, head, after)][1:-1]


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, classes: int, seed: int = 0) -> float:
    """Held-out accuracy of a linear classifier (first 70% train, last 30% test)."""
    train = torch.arange(len(labels)) < int(0.7 * len(labels))
    mean, std = features[train].mean(0), features[train].std(0) + 1e-5
    x = (features - mean) / std
    torch.manual_seed(seed)
    linear = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(500):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(linear(x[train]), labels[train]).backward()
        optimizer.step()
    with torch.no_grad():
        return float((linear(x[~train]).argmax(1) == labels[~train]).float().mean())


def recall_by_attribute(data: Path, predictions: list[dict]) -> dict[str, tuple[float, int]]:
    """{group: (Recall@1, records)} over the records that have predictions."""
    scenes = {s["image_id"]: s["objects"] for s in read_jsonl(data / "scenes.jsonl")}
    ranked: dict[int, list[dict]] = defaultdict(list)
    for prediction in predictions:
        ranked[prediction["image_id"]].append(prediction)
    groups: dict[str, list[bool]] = defaultdict(list)
    for record in read_jsonl(data / "grounding.jsonl"):
        if record["id"] not in ranked:
            continue
        best = max(ranked[record["id"]], key=lambda p: p["score"])["bbox"]
        box = np.array([best[0], best[1], best[0] + best[2], best[1] + best[3]])[None]
        target = np.array(record["grounding"]["regions"][0]["bbox"])[None]
        hit = bool(torchvision.ops.box_iou(torch.from_numpy(box), torch.from_numpy(target))[0, 0] >= 0.5)
        objects = scenes[record["image_id"]]
        differing = [name for name in ATTRIBUTES if len({obj[name] for obj in objects}) > 1]
        words = set(record["grounding"]["caption"].split())
        groups["all"].append(hit)
        groups["objects differ in " + " + ".join(differing)].append(hit)
        for name in ATTRIBUTES:
            if words & set(VALUES[name]):
                groups[f"phrase names a {name}"].append(hit)
    return {name: (float(np.mean(hits)), len(hits)) for name, hits in sorted(groups.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser("probe", help="linear probes of an attribute along the head")
    probe.add_argument("--weights", default=None, help="default: the embedded model")
    probe.add_argument("--data", type=Path, default=Path("data/shapes-val/attributes"))
    probe.add_argument("--attribute", choices=tuple(VALUES), default="colour")
    probe.add_argument("--scenes", type=int, default=120)
    probe.add_argument("--fresh-head", action="store_true", help="probe a newly initialised head instead")
    probe.add_argument("--only", nargs="+", default=(), metavar="VALUE",
                       help="probe only objects with these values, e.g. --attribute shape --only hexagon circle")
    centres = commands.add_parser("centres", help="linear probes at object centres, from the pixels up")
    centres.add_argument("--weights", default=None, help="default: the embedded model")
    centres.add_argument("--data", type=Path, default=Path("data/shapes-val/attributes"))
    centres.add_argument("--attribute", choices=tuple(VALUES), default="colour")
    centres.add_argument("--scenes", type=int, default=150)
    text = commands.add_parser("text", help="token cosines of two captions: text encoder vs head output")
    text.add_argument("--weights", default=None, help="default: the embedded model")
    text.add_argument("--data", type=Path, default=Path("data/shapes-val/attributes"))
    text.add_argument("--captions", nargs=2, default=("a black dotted star", "a red solid star"))
    recall = commands.add_parser("recall", help="Recall@1 by attribute from a predictions file")
    recall.add_argument("--data", type=Path, default=Path("data/shapes-val/attributes"))
    recall.add_argument("--predictions", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "text":
        print(f"{'tokens':24s} text encoder  dot product  projected")
        for pair, encoder, head, after in text_similarity(args.weights, args.data, tuple(args.captions)):
            print(f"{pair:24s} {encoder:12.3f}  {head:11.3f}  {after:9.3f}")
        return 0
    if args.command in ("probe", "centres"):
        unknown = [value for value in getattr(args, "only", ()) if value not in VALUES[args.attribute]]
        if unknown:
            parser.error(f"--only: {', '.join(unknown)} not a {args.attribute} (one of {', '.join(VALUES[args.attribute])})")
        if args.command == "probe":
            features, labels = stage_features(args.weights, args.data, args.scenes, args.attribute, args.fresh_head,
                                             tuple(args.only))
        else:
            features, labels = centre_features(args.weights, args.data, args.scenes, args.attribute)
        if not len(labels):
            parser.error(f"no object to probe in the first {args.scenes} scenes of {args.data} (check --data and --only)")
        chance = float(torch.bincount(labels).max()) / len(labels)
        print(f"{args.attribute} of {len(labels)} objects, majority-class rate {chance:.2f}")
        for name, values in features.items():
            print(f"{name:16s} probe accuracy {probe_accuracy(values, labels, len(VALUES[args.attribute])):.2f}")
    else:
        for name, (value, count) in recall_by_attribute(args.data, json.loads(args.predictions.read_text())).items():
            print(f"{name:40s} R@1 {value:.3f}  ({count} phrases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
