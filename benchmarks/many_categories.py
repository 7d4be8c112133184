"""Evaluation time per image with 1,000 categories: image side once per image vs once per prompt chunk.

Usage::

    python benchmarks/many_categories.py [--categories 1000] [--images 4] [--config glip-tiny]
                                         [--device cpu|cuda] [--threads N] [--repeats 2]

A synthetic COCO dataset (noise images, random boxes, ``--categories`` two-word names such as
"amber lantern") is evaluated twice with the same random model through `evaluate_detection`:

* **image side once**: Swin + FPN once per batch of images, then the text encoder and the fused head
  once per prompt chunk (``reuse_image_features=True``, what ``glip eval`` does);
* **whole model per chunk**: the whole model once per prompt chunk (``reuse_image_features=False``,
  what the official LVIS evaluation does with its chunks).

Both give the same detections (checked: same metrics, scores equal to float rounding). The time is
the wall time of the model run (image loading, preprocessing, model, post-processing) divided by
the number of images, the best of ``--repeats`` runs after one warm-up image. A breakdown times the
image side and one chunk's text side + head alone, which predicts the ratio:
``chunks * (image + chunk) / (image + chunks * chunk)``. Nothing is downloaded; weights are random.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ADJECTIVES = ("amber azure bronze coral crimson dusty emerald frosty golden granite hollow ivory jade lunar "
              "marble misty navy olive pearl quiet rusty sandy scarlet silver smoky spotted striped tawny "
              "velvet violet wooden woolly yellow zinc ancient brisk curly fuzzy gentle humble").split()
NOUNS = ("anchor badger basket beacon bottle candle carpet cricket falcon feather goblet hammer helmet "
         "kettle lantern ladder mitten otter parrot pebble rocket saddle teapot violin walrus").split()


def category_names(count: int) -> list[str]:
    names = [f"{a} {n}" for n in NOUNS for a in ADJECTIVES]
    if count > len(names):
        names += [f"{name} {i}" for i in range(count // len(names) + 1) for name in names]
    return names[:count]


def make_dataset(folder: Path, num_categories: int, num_images: int, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    width, height = size
    images, annotations = [], []
    for index in range(1, num_images + 1):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(folder / f"{index}.png")
        images.append({"id": index, "file_name": f"{index}.png", "width": width, "height": height})
        for _ in range(5):
            w, h = rng.uniform(20, width / 2), rng.uniform(20, height / 2)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            annotations.append({"id": len(annotations) + 1, "image_id": index, "bbox": [x, y, w, h],
                                "category_id": int(rng.integers(1, num_categories + 1)), "area": w * h,
                                "iscrowd": 0})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(category_names(num_categories))]
    path = folder / "synthetic.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@torch.inference_mode()
def breakdown(predictor, dataset, repeats: int) -> dict[str, float]:
    """Seconds of the image side of one image, and of one chunk's text side + fused head."""
    from glip.evaluation.prompts import build_category_chunks
    from glip.images import prepare_images

    chunk = build_category_chunks([c.prompt for c in dataset.categories], predictor.tokenizer,
                                  predictor.max_length)[0]
    batch = prepare_images([dataset.image_path(dataset.images[0])], predictor.model.config.input)
    batch = batch.to(predictor.device)
    ids = chunk.tokens.input_ids[None].to(predictor.device)
    mask = chunk.tokens.attention_mask[None].to(predictor.device)
    image_times, chunk_times = [], []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        features = predictor.model.encode_images(batch.tensor)
        middle = time.perf_counter()
        predictor.model(batch.tensor, ids, mask, image_features=features)
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        image_times.append(middle - started)
        chunk_times.append(time.perf_counter() - middle)
    return {"image_side": min(image_times[1:]), "chunk": min(chunk_times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--categories", type=int, default=1000)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--config", default="glip-tiny", help="a preset of glip.config (random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from glip.config import get_config
    from glip.evaluation import evaluate_detection, load_detection_dataset
    from glip.evaluation.inference import predict_detections
    from glip.modeling.glip import GLIP
    from glip.predictor import GLIPPredictor

    torch.manual_seed(0)
    model = GLIP(get_config(args.config)).eval()
    with torch.no_grad():
        model.head.bias0.fill_(0.0)  # random weights: give the scores a spread, so candidates exist
    predictor = GLIPPredictor(model, device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        dataset = load_detection_dataset(make_dataset(Path(folder), args.categories, args.images, tuple(args.size)))
        for reuse in (True, False):  # warm-up: first calls allocate and pick kernels
            predict_detections(predictor, dataset, dataset.images[:1], reuse_image_features=reuse)
        runs: dict[bool, list] = {True: [], False: []}
        for _ in range(args.repeats):
            for reuse in (True, False):
                runs[reuse].append(evaluate_detection(dataset, predictor, reuse_image_features=reuse))
        parts = breakdown(predictor, dataset, args.repeats)
    once = min(runs[True], key=lambda r: r.timing["seconds"])
    rerun = min(runs[False], key=lambda r: r.timing["seconds"])
    chunks = once.timing["prompt_chunks"]
    per_image_once = once.timing["seconds"] / args.images
    per_image_rerun = rerun.timing["seconds"] / args.images
    score_gap = max((abs(a["score"] - b["score"]) for a, b in zip(once.predictions, rerun.predictions)), default=0.0)
    predicted = chunks * (parts["image_side"] + parts["chunk"]) / (parts["image_side"] + chunks * parts["chunk"])
    device = torch.cuda.get_device_name() if predictor.device.type == "cuda" else platform.processor() or "cpu"
    print(f"# Evaluation with {args.categories} categories ({args.config}, random weights)\n")
    print(f"{args.images} images of {args.size[0]}x{args.size[1]}, {chunks} prompt chunks of <= "
          f"{predictor.max_length} tokens, {predictor.device} ({device}), {torch.get_num_threads()} threads, "
          f"best of {args.repeats}\n")
    print("| mode | s / image | images / s |")
    print("| :--- | ---: | ---: |")
    print(f"| image side once per image | {per_image_once:.3f} | {1 / per_image_once:.3f} |")
    print(f"| whole model per prompt chunk | {per_image_rerun:.3f} | {1 / per_image_rerun:.3f} |")
    print(f"\nspeed-up: {per_image_rerun / per_image_once:.2f}x")
    print(f"breakdown: image side {parts['image_side'] * 1000:.1f} ms, one chunk (text + head) "
          f"{parts['chunk'] * 1000:.1f} ms -> predicted speed-up {predicted:.2f}x")
    same = once.metrics == rerun.metrics
    print(f"same metrics: {same} (AP {once.metrics['AP']:.4f}); largest score difference {score_gap:.1e}")


if __name__ == "__main__":
    main()
