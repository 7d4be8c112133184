"""Detection with 1,203 categories (the size of LVIS) on one image: the engine against the whole model per chunk.

Usage::

    python benchmarks/many_categories.py [--configs glip-t glip-t-a] [--categories 1203] [--images 1]
                                         [--size 1333 800] [--chunks-per-pass 4] [--device cpu|cuda]
                                         [--threads N] [--repeats 1]

For each config (random weights, nothing downloaded) the same class list, split into prompt chunks
of the token window, runs through `DetectionEngine.detect` in these modes:

* **whole model per chunk**: Swin + FPN + text + head once per chunk (``image_side_once=False``),
  what the official LVIS evaluation does;
* **image side once, 1 chunk per pass** (fused heads only): the image side once, then the text and
  the fused head per chunk (the engine before chunks were batched);
* **engine** (the default path): fused heads take ``--chunks-per-pass`` chunks per pass as one
  batch; a tower without text (GLIP-T(A)) runs once per image and only the dot product per chunk.

Each mode's time is the best of ``--repeats`` runs after a warm-up, per image; the ratios are
against the whole model per chunk. Every mode's detections are compared with that mode's (count,
largest score difference). A reduced check: ``--configs glip-tiny glip-tiny-nofusion --categories
300 --size 160 128``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ADJECTIVES = ("amber azure bronze coral crimson dusty emerald frosty golden granite hollow ivory jade lunar "
              "marble misty navy olive pearl quiet rusty sandy scarlet silver smoky spotted striped tawny "
              "velvet violet wooden woolly yellow zinc ancient brisk curly fuzzy gentle humble").split()
NOUNS = ("anchor badger basket beacon bottle candle carpet cricket falcon feather goblet hammer helmet "
         "kettle lantern ladder mitten otter parrot pebble rocket saddle teapot violin walrus").split()


def category_names(count: int) -> list[str]:
    """``count`` distinct two-word names ("amber lantern"), three words past 1,000."""
    names = [f"{a} {n}" for n in NOUNS for a in ADJECTIVES]
    if count > len(names):
        names += [f"{name} {i}" for i in range(count // len(names) + 1) for name in names]
    return names[:count]


def _timed(engine, batch, chunks, repeats: int, **kwargs):
    detections = engine.detect(batch, chunks, **kwargs)  # warm-up: allocations and kernel choice
    times = []
    for _ in range(repeats):
        if batch.tensor.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        detections = engine.detect(batch, chunks, **kwargs)
        if batch.tensor.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times), detections


def _gap(found, reference) -> str:
    counts = sum(len(d) for d in found), sum(len(d) for d in reference)
    if counts[0] != counts[1]:
        return f"{counts[0]} vs {counts[1]} detections"
    gap = max((float((a.scores - b.scores).abs().max()) for a, b in zip(found, reference) if len(a)), default=0.0)
    return f"same {counts[0]} detections, scores within {gap:.1e}"


def run_config(name: str, args, names: list[str]) -> None:
    from glip.config import InputConfig, get_config
    from glip.engine import DetectionEngine
    from glip.images import prepare_images
    from glip.modeling.glip import GLIP
    from glip.prompts import chunk_class_names
    from glip.tokenizer import load_tokenizer

    torch.manual_seed(0)
    config = get_config(name)
    model = GLIP(config).eval().to(args.device)
    with torch.no_grad():
        model.head.bias0.fill_(0.0)  # random weights: give the scores a spread, so candidates exist
    width, height = args.size
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(args.images)]
    input_config = InputConfig(min_size=min(width, height), max_size=max(width, height))
    batch = prepare_images(pixels, input_config).to(args.device)
    chunks = chunk_class_names(names, config.text.max_length, load_tokenizer())
    engine = DetectionEngine(model, chunks_per_pass=args.chunks_per_pass)
    rerun_time, reference = _timed(engine, batch, chunks, args.repeats, image_side_once=False)
    rows = [("whole model per chunk", rerun_time, "reference")]
    if model.head.tower_reads_text:
        single = DetectionEngine(model, chunks_per_pass=1)
        seconds, found = _timed(single, batch, chunks, args.repeats)
        rows.append(("image side once, 1 chunk per pass", seconds, _gap(found, reference)))
        label = f"engine: image side once, {args.chunks_per_pass} chunks per pass"
    else:
        label = "engine: image side and tower once, dot product per chunk"
    seconds, found = _timed(engine, batch, chunks, args.repeats)
    rows.append((label, seconds, _gap(found, reference)))
    print(f"\n## {name}: {len(names)} categories in {len(chunks)} prompt chunks of <= {config.text.max_length} "
          f"tokens, {args.images} image(s) of {width}x{height}\n")
    print("| mode | s / image | speed-up vs whole model per chunk | detections |")
    print("| :--- | ---: | ---: | :--- |")
    for label, seconds, note in rows:
        print(f"| {label} | {seconds / args.images:.3f} | {rerun_time / seconds:.2f}x | {note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["glip-t", "glip-t-a"], help="presets of glip.config")
    parser.add_argument("--categories", type=int, default=1203)
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=(1333, 800), metavar=("W", "H"))
    parser.add_argument("--chunks-per-pass", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"# {args.categories} categories on one image: the engine against the whole model per prompt chunk\n")
    print(f"random weights, {args.device} ({device}), {torch.get_num_threads()} threads, best of {args.repeats}")
    names = category_names(args.categories)
    with torch.inference_mode():
        for name in args.configs:
            run_config(name, args, names)


if __name__ == "__main__":
    main()
