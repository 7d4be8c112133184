"""Extra detections per object on a user's first pictures: every (box, name) pair vs one name per object.

Usage::

    python benchmarks/first_picture.py [--scenes 50] [--seed 0] [--thresholds T ...] [--iou 0.5]
                                       [--sweep-iou 0.3 0.5 0.7] [--containment 0.7] [--crowded]
                                       [--threads 1] [--device cpu] [--save DIR]

The scenes come from this file's own renderer, which the embedded model never saw in training
(it was trained on ``glip.shapes``' renderer): backgrounds of any lightness (flat with noise, radial,
speckled, blurred noise), object colours drawn in HSV rather than the eight named colours, shapes
filled solid, outlined (1-3 px) or hatched with thin lines, drawn by PIL on a 3x canvas and
downsampled (circles and rings as PIL ellipses, the other shapes from the outlines of
``glip.shapes.geometry``), images of 320-480 px a side. The shapes are the 10 det-train classes,
and the prompt is that class list. A scene holds 1-6 objects that barely overlap;
``--crowded`` draws 6-12 objects that may hide up to 45% of one another and sit inside one
another's boxes (a small shape on a large one), to check that no real object is lost.

The embedded model (``GLIPPredictor.from_pretrained(None)``) runs once per scene with every
(box, name) pair kept (``all_names=True`` where the predictor has it). Both modes are computed from
that one output: *all names* as it is, *one name per object* by
``glip.modeling.postprocess.one_name_per_object``. For each threshold (default: the CLI's default
and 0.3, the README's first command), a detection matches the unmatched ground-truth object it
overlaps most at IoU >= 0.5, greedily by score, whatever its name:

* extra / object = (detections - matched) / objects; *duplicates* are the extra detections that
  overlap an already matched object at IoU >= 0.5 (the same object again, usually under another
  name); *parts* are the other extra detections with more than 80% of their area inside an
  object's box (a box on part of an object); the rest overlap objects loosely or not at all;
* recall = matched / objects; objects lost = objects matched with all names but not with one name
  per object; correct name = matched detections whose name is the object's class, divided by
  matched.

``--containment C`` adds a rule that was measured and not adopted: after one name per object,
also drop a box with more than C of its area inside a higher-scoring kept box of another name.

Last, the README's first picture (``examples/scene.png``, its five classes, threshold 0.3): boxes
with all names and with one name per object.
"""

from __future__ import annotations

import argparse
import inspect
import math
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torchvision.ops import box_iou

from glip.modeling.postprocess import Detections, one_name_per_object
from glip.shapes.geometry import ROTATION_RANGE, polygon
from glip.shapes.vocabulary import DETECTION_SHAPES

SUPERSAMPLE = 3  # drawing canvas factor; the patch is downsampled with a box filter
STYLES = ("solid", "outlined", "hatched")
MATCH_IOU = 0.5
PART_INSIDE = 0.8  # an extra detection with more of its area inside an object's box is on part of it
PLACEMENT_TRIES = 40
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "scene.png"
EXAMPLE_CLASSES = ["star", "square", "hexagon", "cross", "circle"]
EXAMPLE_THRESHOLD = 0.3


@dataclass(frozen=True)
class Layout:
    """How many objects a scene asks for and how much they may overlap."""

    min_objects: int
    max_objects: int
    max_occluded: float  # most of an earlier object's pixels that later ones may cover
    max_box_iou: float  # most IoU of two objects' boxes
    diameter: tuple[float, float]  # of the image's shorter side


SPARSE = Layout(1, 6, 0.15, 0.2, (0.08, 0.3))
CROWDED = Layout(6, 12, 0.45, 1.0, (0.07, 0.3))


@dataclass
class TruthObject:
    shape: str
    box: tuple[float, float, float, float]  # tight box of the whole shape (hidden parts included), pixels
    mask: np.ndarray = field(repr=False)  # [H, W] bool, the shape's pixels (coverage >= 0.5)


@dataclass
class BenchScene:
    image: Image.Image
    objects: list[TruthObject]


# ---------------------------------------------------------------------------------------- renderer
def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """[H, W, 3] float32 in [0, 255], of any lightness (the training scenes stay in mid greys)."""
    base = rng.uniform(20.0, 235.0) + rng.uniform(-40.0, 40.0, size=3)
    kind = rng.integers(4)
    if kind == 0:  # flat with sensor-like noise
        image = np.broadcast_to(base, (height, width, 3)) + rng.normal(0.0, rng.uniform(0.0, 6.0), (height, width, 3))
    elif kind == 1:  # radial: one colour in the middle, another at the corners
        other = rng.uniform(20.0, 235.0) + rng.uniform(-40.0, 40.0, size=3)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        t = np.hypot(x - cx, y - cy) / math.hypot(width, height)  # [H, W]
        image = base + (t / t.max())[:, :, None] * (other - base)
    elif kind == 2:  # speckled: small dots of a nearby tone
        canvas = Image.new("RGB", (width, height), tuple(int(v) for v in np.clip(base, 0, 255)))
        draw = ImageDraw.Draw(canvas)
        tone = tuple(int(v) for v in np.clip(base + rng.uniform(-45.0, 45.0, size=3), 0, 255))
        for _ in range(int(width * height / rng.uniform(120.0, 400.0))):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.5, 1.8)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tone)
        image = np.asarray(canvas, dtype=np.float32)
    else:  # blurred noise: soft blotches
        noise = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        blotches = np.asarray(noise.filter(ImageFilter.GaussianBlur(rng.uniform(3.0, 8.0))), dtype=np.float32)
        image = base + (blotches - blotches.mean()) * rng.uniform(1.5, 4.0)
    return np.clip(image, 0.0, 255.0).astype(np.float32)


def _colour(rng: np.random.Generator, behind: np.ndarray) -> np.ndarray:
    """An HSV-drawn colour that stands out from ``behind`` (the mean colour under the object)."""
    best, best_distance = None, -1.0
    for _ in range(30):
        h, s, v = rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0), rng.uniform(0.1, 1.0)
        rgb = np.asarray(Image.new("HSV", (1, 1), (int(h * 255), int(s * 255), int(v * 255))).convert("RGB")
                         .getpixel((0, 0)), dtype=np.float32)
        distance = float(np.linalg.norm(rgb - behind))
        if distance >= 120.0:
            return rgb
        if distance > best_distance:
            best, best_distance = rgb, distance
    return best


def _shape_mask(rng: np.random.Generator, shape: str, diameter: float, angle: float) -> Image.Image:
    """A supersampled "L" patch (255 inside) of ``shape`` centred in it, ``diameter`` in final pixels."""
    outline = polygon(shape) if shape not in ("circle", "ring") else None
    reach = 1.0 if outline is None else float(np.linalg.norm(outline, axis=1).max())
    side = (int(math.ceil(diameter * reach)) + 4) * SUPERSAMPLE
    patch = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(patch)
    centre, radius = side / 2, diameter * SUPERSAMPLE / 2
    disc = [centre - radius, centre - radius, centre + radius, centre + radius]
    if shape == "circle":
        draw.ellipse(disc, fill=255)
    elif shape == "ring":  # a thick ellipse outline; the hole is 45-70% of the diameter
        draw.ellipse(disc, outline=255, width=max(SUPERSAMPLE, int(radius * (1.0 - rng.uniform(0.45, 0.7)))))
    else:
        theta = math.radians(angle)
        rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
        points = centre + radius * (outline @ rotation)  # [K, 2]
        draw.polygon([tuple(p) for p in points.tolist()], fill=255)
    return patch


def _styled(rng: np.random.Generator, mask: Image.Image, colour: np.ndarray, style: str) -> Image.Image:
    """Supersampled RGB patch of the object: its colour, plus an outline or hatching in a second tone."""
    second = colour * 0.35 if colour.mean() > 128.0 else colour + 0.6 * (255.0 - colour)
    patch = Image.new("RGB", mask.size, tuple(int(v) for v in colour))
    if style == "outlined":
        inner = mask
        for _ in range(int(rng.integers(1, 4)) * SUPERSAMPLE):
            inner = inner.filter(ImageFilter.MinFilter(3))
        ring = Image.fromarray(((np.asarray(mask) > 127) & (np.asarray(inner) <= 127)).astype(np.uint8) * 255)
        patch.paste(tuple(int(v) for v in second), mask=ring)
    elif style == "hatched":
        draw = ImageDraw.Draw(patch)
        spacing = rng.uniform(4.0, 9.0) * SUPERSAMPLE
        width = int(rng.integers(1, 3)) * SUPERSAMPLE
        theta = rng.uniform(0.0, math.pi)
        side = mask.size[0]
        direction = np.array([math.cos(theta), math.sin(theta)])
        normal = np.array([-direction[1], direction[0]])
        for offset in np.arange(-side, side, spacing):
            a = side / 2 + normal * offset - direction * side
            b = side / 2 + normal * offset + direction * side
            draw.line([tuple(a), tuple(b)], fill=tuple(int(v) for v in second), width=width)
    return patch


def _place(rng: np.random.Generator, shape: str, layout: Layout, height: int, width: int):
    """One object at a random place: (supersampled mask, alpha [side, side] in final pixels, top-left
    corner of the patch in the image, tight box in the image)."""
    diameter = rng.uniform(*layout.diameter) * min(height, width)
    limit = ROTATION_RANGE[shape]
    angle = rng.uniform(-limit, limit)
    mask = _shape_mask(rng, shape, diameter, angle)
    rows, cols = np.nonzero(np.asarray(mask) > 127)
    low = (cols.min() / SUPERSAMPLE, rows.min() / SUPERSAMPLE)
    high = ((cols.max() + 1) / SUPERSAMPLE, (rows.max() + 1) / SUPERSAMPLE)
    side = mask.size[0] // SUPERSAMPLE
    left = int(rng.integers(-int(low[0]), max(-int(low[0]) + 1, width - int(math.ceil(high[0])))))
    top = int(rng.integers(-int(low[1]), max(-int(low[1]) + 1, height - int(math.ceil(high[1])))))
    alpha = np.asarray(mask.resize((side, side), Image.BOX), dtype=np.float32) / 255.0
    box = (left + low[0], top + low[1], left + high[0], top + high[1])
    return mask, alpha, (left, top), box


def _full_mask(alpha: np.ndarray, corner: tuple[int, int], height: int, width: int) -> np.ndarray:
    full = np.zeros((height, width), dtype=bool)
    left, top = corner
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + alpha.shape[1], width), min(top + alpha.shape[0], height)
    full[y0:y1, x0:x1] = alpha[y0 - top:y1 - top, x0 - left:x1 - left] >= 0.5
    return full


def _inside(boxes: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """[D, 4], [G, 4] -> [D, G]: the share of each box's area that lies inside each truth box."""
    low = torch.maximum(boxes[:, None, :2], truth[None, :, :2])  # [D, G, 2]
    high = torch.minimum(boxes[:, None, 2:], truth[None, :, 2:])
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1).clamp(min=1e-6)  # [D]
    return (high - low).clamp(min=0).prod(dim=2) / area[:, None]


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0])


def _fits(new_mask: np.ndarray, box: tuple[float, ...], objects: list[TruthObject], layout: Layout,
          visible: list[np.ndarray]) -> bool:
    for obj, seen in zip(objects, visible):
        if (seen & ~new_mask).sum() < (1.0 - layout.max_occluded) * obj.mask.sum():
            return False
        if _box_iou(box, obj.box) > layout.max_box_iou:
            return False
    return True


def render_scene(rng: np.random.Generator, layout: Layout) -> BenchScene:
    """One scene: a background and 1+ objects painted in order (a later one on top)."""
    height, width = int(rng.integers(320, 481)), int(rng.integers(320, 481))
    image = _background(rng, height, width)
    objects: list[TruthObject] = []
    visible: list[np.ndarray] = []
    for _ in range(int(rng.integers(layout.min_objects, layout.max_objects + 1))):
        shape = DETECTION_SHAPES[int(rng.integers(len(DETECTION_SHAPES)))]
        for _ in range(PLACEMENT_TRIES):
            mask, alpha, corner, box = _place(rng, shape, layout, height, width)
            full = _full_mask(alpha, corner, height, width)
            if full.any() and _fits(full, box, objects, layout, visible):
                break
        else:
            continue
        behind = image[full].mean(axis=0)
        style = STYLES[int(rng.integers(len(STYLES)))]
        side = alpha.shape[0]
        colours = np.asarray(_styled(rng, mask, _colour(rng, behind), style).resize((side, side), Image.BOX),
                             dtype=np.float32)
        _composite(image, colours, alpha, corner)
        visible = [seen & ~full for seen in visible] + [full]
        objects.append(TruthObject(shape, box, full))
    return BenchScene(Image.fromarray(np.round(image).astype(np.uint8)), objects)


def _composite(image: np.ndarray, colours: np.ndarray, alpha: np.ndarray, corner: tuple[int, int]) -> None:
    height, width = image.shape[:2]
    left, top = corner
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + alpha.shape[1], width), min(top + alpha.shape[0], height)
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left, None]  # [h, w, 1]
    region = image[y0:y1, x0:x1]
    region += a * (colours[y0 - top:y1 - top, x0 - left:x1 - left] - region)


# ---------------------------------------------------------------------------------------- scoring
@dataclass
class Tally:
    objects: int = 0
    detections: int = 0
    matched: int = 0
    correct_names: int = 0
    duplicates: int = 0
    parts: int = 0  # extra detections lying mostly inside an object's box
    extra_names: Counter = field(default_factory=Counter)  # name -> extra detections under it
    lost: int = 0  # objects matched with all names but not in this mode
    found: list[set[int]] = field(default_factory=list)  # per scene, the matched objects' indices

    def add(self, detections: Detections, names: list[str], objects: list[TruthObject],
            found_with_all_names: set[int] | None = None) -> None:
        """Greedy matching by score, whatever the name; see the module docstring."""
        self.objects += len(objects)
        self.detections += len(detections)
        found: set[int] = set()
        self.found.append(found)
        if len(detections) and objects:
            found |= self._match(detections, names, objects)
        if found_with_all_names is not None:
            self.lost += len(found_with_all_names - found)

    def _match(self, detections: Detections, names: list[str], objects: list[TruthObject]) -> set[int]:
        truth = torch.tensor([obj.box for obj in objects], dtype=torch.float32)
        ranked = detections.sorted()
        overlaps = box_iou(ranked.boxes.float(), truth)  # [D, G]
        inside = _inside(ranked.boxes.float(), truth)  # [D, G]
        taken = torch.zeros(len(objects), dtype=torch.bool)
        for row, label in enumerate(ranked.labels.tolist()):
            free = overlaps[row].masked_fill(taken, -1.0)
            best = int(free.argmax())
            if free[best] >= MATCH_IOU:
                taken[best] = True
                self.matched += 1
                self.correct_names += names[label] == objects[best].shape
            else:
                self.extra_names[names[label]] += 1
                if overlaps[row].max() >= MATCH_IOU:
                    self.duplicates += 1
                elif inside[row].max() > PART_INSIDE:
                    self.parts += 1
        return set(taken.nonzero().flatten().tolist())

    def row(self) -> list[str]:
        objects, matched = max(self.objects, 1), max(self.matched, 1)
        extra = self.detections - self.matched
        return [str(self.objects), str(self.detections), f"{extra / objects:.3f}", f"{self.duplicates / objects:.3f}",
                f"{self.parts / objects:.3f}",
                f"{self.matched / objects:.3f}", str(self.lost), f"{self.correct_names / matched:.3f}"]


def drop_contained(detections: Detections, fraction: float) -> Detections:
    """The containment rule measured against (``--containment``), applied after one name per object:
    by descending score, also drop a box whose area lies more than ``fraction`` inside an already
    kept box of another name."""
    ranked = detections.sorted()
    boxes = ranked.boxes.float()
    corner_low = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])  # [N, N, 2]
    corner_high = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1).clamp(min=1e-6)  # [N]
    inside = (corner_high - corner_low).clamp(min=0).prod(dim=2) / area[:, None]  # [N, N]: share of i inside j
    conflicts = (inside > fraction) & (ranked.labels[:, None] != ranked.labels[None, :])
    kept: list[int] = []
    for row in range(len(ranked)):
        if not any(bool(conflicts[row, j]) for j in kept):
            kept.append(row)
    return ranked.select(torch.tensor(kept, dtype=torch.long))


def cli_default_threshold() -> float:
    from glip.cli import build_parser

    return build_parser().parse_args(["detect", "image.png", "--classes", "a"]).threshold


def detect_all_names(predictor, images: list, classes: list[str], threshold: float) -> list[Detections]:
    """Every (box, name) pair above ``threshold`` per image, as `Detections` (labels index ``classes``)."""
    options = {"all_names": True} if "all_names" in inspect.signature(predictor.detect).parameters else {}
    results = predictor.detect(images, classes=classes, threshold=threshold, **options)
    out = []
    for result in results:
        boxes = torch.tensor([d.bbox_xyxy for d in result.detections], dtype=torch.float32).reshape(-1, 4)
        scores = torch.tensor([d.score for d in result.detections], dtype=torch.float32)
        labels = torch.tensor([d.phrase_index for d in result.detections], dtype=torch.long)
        out.append(Detections(boxes, scores, labels))
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells: list[str]) -> str:  # the threshold and the mode to the left, figures to the right
        return "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    default_threshold = cli_default_threshold()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[default_threshold, EXAMPLE_THRESHOLD],
                        help=f"score thresholds (default: the CLI's default {default_threshold} and 0.3)")
    parser.add_argument("--iou", type=float, default=None,
                        help="one_name_per_object's IoU threshold (default: the function's default)")
    parser.add_argument("--sweep-iou", type=float, nargs="*", default=[],
                        help="further IoU thresholds to report, e.g. 0.3 0.5 0.7")
    parser.add_argument("--containment", type=float, nargs="*", default=[],
                        help="also report one name per object plus a containment rule: drop a box more than "
                             "this share of whose area lies inside a kept box of another name, e.g. 0.7")
    parser.add_argument("--crowded", action="store_true", help="6-12 objects, up to 45%% hidden, nested boxes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--save", type=Path, default=None, help="write the scenes as PNG files here")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        parser.error("--scenes must be at least 1")
    torch.set_num_threads(args.threads)
    from glip.predictor import GLIPPredictor

    default_iou = inspect.signature(one_name_per_object).parameters["iou_threshold"].default
    ious = [args.iou if args.iou is not None else default_iou] + list(args.sweep_iou)
    layout = CROWDED if args.crowded else SPARSE
    print("command: python " + " ".join([sys.argv[0]] + (sys.argv[1:] if argv is None else list(argv))))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"device {args.device}")

    start = time.perf_counter()
    scenes = [render_scene(np.random.default_rng([args.seed, index]), layout) for index in range(args.scenes)]
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        for index, scene in enumerate(scenes):
            scene.image.save(args.save / f"scene_{index:03d}.png")
    rendered = time.perf_counter() - start
    predictor = GLIPPredictor.from_pretrained(None, device=args.device)
    classes = list(DETECTION_SHAPES)
    start = time.perf_counter()
    outputs = detect_all_names(predictor, [scene.image for scene in scenes], classes, min(args.thresholds))
    detected = time.perf_counter() - start
    print(f"{args.scenes} {'crowded' if args.crowded else 'sparse'} scenes (seed {args.seed}), "
          f"{sum(len(s.objects) for s in scenes)} objects, prompt: {'. '.join(classes)}.; "
          f"rendering {rendered:.1f} s, detection {detected:.1f} s")

    rows, notes = [], []
    for threshold in args.thresholds:
        kept = [d.select(d.scores >= threshold) for d in outputs]
        modes = [("all names", kept)] + [(f"one name per object (IoU > {iou})",
                                          [one_name_per_object(d, iou) for d in kept]) for iou in ious]
        for share in args.containment:
            modes.append((f"one name (IoU > {ious[0]}) + contained > {share}",
                          [drop_contained(one_name_per_object(d, ious[0]), share) for d in kept]))
        reference: list[set[int]] | None = None
        for mode, per_scene in modes:
            tally = Tally()
            for index, (scene, detections) in enumerate(zip(scenes, per_scene)):
                tally.add(detections, classes, scene.objects, None if reference is None else reference[index])
            if reference is None:
                reference = tally.found
            rows.append([f"{threshold:g}", mode] + tally.row())
            if mode != "all names" and not notes:
                notes.append(f"names of the extra detections at {threshold:g}, {mode}: "
                             + ", ".join(f"{name} {count}" for name, count in tally.extra_names.most_common()))
    header = ["threshold", "mode", "objects", "detections", "extra/object", "duplicates/object", "parts/object",
              "recall", "objects lost", "correct name"]
    print(_table(header, rows))
    print("\n".join(notes))

    example = detect_all_names(predictor, [str(EXAMPLE)], EXAMPLE_CLASSES, EXAMPLE_THRESHOLD)[0]
    print(f"{EXAMPLE.name} ({' '.join(EXAMPLE_CLASSES)}, threshold {EXAMPLE_THRESHOLD}): {len(example)} boxes with "
          f"all names, {len(one_name_per_object(example, ious[0]))} with one name per object (IoU > {ious[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
