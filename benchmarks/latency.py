"""Inference latency of GLIP-T against Hugging Face Grounding DINO (Swin-T), both with random weights.

Usage::

    python benchmarks/latency.py [--device cpu|cuda] [--repeats N] [--warmup N] [--threads N]
                                 [--height 800 --width 1333] [--skip-grounding-dino]

What is timed, per image (batch of 1):

* GLIP-T: ``model(images, input_ids, attention_mask)`` under ``torch.inference_mode()`` followed by the
  ATSS post-processing (candidates + class-aware NMS). The input is the network input after
  preprocessing: a random ``[1, 3, H, W]`` tensor zero-padded to multiples of 32 (800x1333 ->
  800x1344) and a 4-class prompt padded to 256 tokens. The time spent in ``model.encode_images``
  (Swin + FPN) is recorded inside that same call, so the "image side" and "rest" rows add up to the
  end-to-end row; the rest (BERT, fused head, anchors, post-processing) is what every additional
  prompt chunk of the same image costs, since chunks reuse the image features.
* Grounding DINO: ``GroundingDinoForObjectDetection(pixel_values, pixel_mask, input_ids, ...)``
  with the default (Swin-T, BERT-base) config, the same image size (not padded, with an all-ones
  pixel mask) and the same prompt at its real length (Grounding DINO does not pad to 256), then the
  processor's ``post_process_grounded_object_detection`` when it can be built.

Weights are random, so the detections mean nothing; only the amount of computation matters (the
post-processing cost of GLIP depends slightly on how many candidates pass the threshold). Nothing
is downloaded: the Hugging Face hub is switched offline before transformers is imported. The
script prints figures and asserts nothing about time.
"""

from __future__ import annotations

import os

# Before anything imports transformers (glip.tokenizer does): never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

CLASS_NAMES = ["person", "bicycle", "car", "dog"]
SIZE_DIVISIBILITY = 32


@dataclass
class Timings:
    """Seconds per repeat of each named phase, in the order phases were first recorded."""

    phases: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.phases.setdefault(name, []).append(seconds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own default)")
    parser.add_argument("--height", type=int, default=800, help="image height before padding (default 800)")
    parser.add_argument("--width", type=int, default=1333, help="image width before padding (default 1333)")
    parser.add_argument("--skip-grounding-dino", action="store_true", help="time GLIP-T only")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights and image")
    parser.add_argument("--candidate-threshold", type=float, default=None,
                        help="override GLIP's post-processing candidate threshold (default: the config's "
                             "0.05, which random weights rarely pass; 0 makes every location a candidate, "
                             "the worst case for post-processing)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.height < 1 or args.width < 1:
        parser.error("--height and --width must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but torch.cuda.is_available() is False")
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def padded_size(height: int, width: int) -> tuple[int, int]:
    def up(value: int) -> int:
        return (value + SIZE_DIVISIBILITY - 1) // SIZE_DIVISIBILITY * SIZE_DIVISIBILITY

    return up(height), up(width)


def run_repeats(name: str, step: Callable[[Timings], None], warmup: int, repeats: int,
                device: torch.device) -> Timings:
    """Call ``step`` ``warmup`` times untimed, then ``repeats`` times, each recording its phases."""
    for index in range(warmup):
        started = time.perf_counter()
        step(Timings())
        print(f"  {name}: warm-up {index + 1}/{warmup} took {time.perf_counter() - started:.2f} s", flush=True)
    timings = Timings()
    for index in range(repeats):
        step(timings)
        print(f"  {name}: run {index + 1}/{repeats} took {timings.phases['total'][-1]:.2f} s", flush=True)
    if device.type == "cuda":
        print(f"  {name}: peak CUDA memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB", flush=True)
    return timings


# --------------------------------------------------------------------------------------------- GLIP


def benchmark_glip(args: argparse.Namespace, device: torch.device) -> Timings:
    from glip.config import get_config
    from glip.modeling.glip import GLIP
    from glip.modeling.postprocess import PostProcessor
    from glip.prompts import build_class_prompt, tokenize_prompt

    print("building GLIP-T (random weights) ...", flush=True)
    torch.manual_seed(args.seed)
    model = GLIP(get_config("glip-t")).eval().to(device)
    print(f"  GLIP-T parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M", flush=True)
    if args.candidate_threshold is not None:
        model.config.postprocess.candidate_threshold = args.candidate_threshold
    postprocessor = PostProcessor(model.config.postprocess)

    prompt = tokenize_prompt(build_class_prompt(CLASS_NAMES))
    input_ids = prompt.input_ids[None].to(device)  # [1, 256]
    attention_mask = prompt.attention_mask[None].to(device)  # [1, 256]
    print(f"  prompt {build_class_prompt(CLASS_NAMES).caption!r}: {prompt.num_tokens} real tokens, "
          f"padded to {input_ids.shape[1]}", flush=True)

    height, width = args.height, args.width
    pad_h, pad_w = padded_size(height, width)
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(args.seed))
    images = F.pad(image, (0, pad_w - width, 0, pad_h - height)).to(device)  # [1, 3, pad_h, pad_w]

    # Time encode_images inside the real forward call: forward() looks the method up on the
    # instance, so an instance attribute wrapping it sees exactly the image side of each call.
    image_side: list[float] = []
    encode_images = model.encode_images

    def timed_encode_images(batch: torch.Tensor):
        synchronize(device)
        started = time.perf_counter()
        features = encode_images(batch)
        synchronize(device)
        image_side.append(time.perf_counter() - started)
        return features

    model.encode_images = timed_encode_images

    num_candidates: list[int] = []
    num_detections: list[int] = []

    def step(timings: Timings) -> None:
        image_side.clear()
        synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model(images, input_ids, attention_mask)
            synchronize(device)
            forward_done = time.perf_counter()
            candidates = postprocessor.candidates(out.head, out.anchors, prompt.token_indices, 0, (height, width))
            detections = postprocessor.select(candidates)
            synchronize(device)
        finished = time.perf_counter()
        if len(image_side) != 1:
            raise RuntimeError(f"expected one encode_images call per forward, saw {len(image_side)}")
        timings.add("total", finished - started)
        timings.add("image", image_side[0])
        timings.add("text+head", forward_done - started - image_side[0])
        timings.add("post", finished - forward_done)
        timings.add("rest", finished - started - image_side[0])
        num_candidates.append(len(candidates))
        num_detections.append(len(detections))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = run_repeats("GLIP-T", step, args.warmup, args.repeats, device)
    print(f"  GLIP-T post-processing (random weights, candidate threshold "
          f"{model.config.postprocess.candidate_threshold}): {num_candidates[-1]} candidates, "
          f"{num_detections[-1]} detections after NMS", flush=True)
    return timings


# ----------------------------------------------------------------------------------- Grounding DINO


def build_grounding_dino():
    """GroundingDinoForObjectDetection with the default (tiny, Swin-T) config and a local BERT-base
    text config, random weights; nothing is downloaded."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection

    text_config = BertConfig(  # bert-base-uncased sizes
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
    )
    config = GroundingDinoConfig(text_config=text_config)
    if getattr(config, "use_pretrained_backbone", False):
        config.use_pretrained_backbone = False  # older versions: never fetch backbone weights
    return GroundingDinoForObjectDetection(config).eval(), config


def build_grounding_dino_postprocess(tokenizer):
    """The processor's grounded post-processing, or None (with the reason printed) if unavailable."""
    try:
        from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

        processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer)
        return processor.post_process_grounded_object_detection
    except Exception as error:  # version differences: time the forward pass only
        print(f"  Grounding DINO post-processing unavailable ({type(error).__name__}: {error}); "
              "timing its forward pass only", flush=True)
        return None


def benchmark_grounding_dino(args: argparse.Namespace, device: torch.device) -> Timings | None:
    from glip.prompts import build_class_prompt
    from glip.tokenizer import load_tokenizer

    print("building Grounding DINO (Swin-T, random weights) ...", flush=True)
    try:
        torch.manual_seed(args.seed)
        model, config = build_grounding_dino()
        model = model.to(device)
    except Exception as error:
        print(f"  could not build Grounding DINO with this transformers version: "
              f"{type(error).__name__}: {error}", flush=True)
        traceback.print_exc()
        return None
    print(f"  Grounding DINO parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
          f"(backbone {config.backbone_config.model_type}, embed_dim "
          f"{getattr(config.backbone_config, 'embed_dim', '?')}, depths "
          f"{getattr(config.backbone_config, 'depths', '?')}; {config.num_queries} queries)", flush=True)

    tokenizer = load_tokenizer()
    caption = build_class_prompt(CLASS_NAMES).caption
    text = tokenizer(caption, return_tensors="pt")  # real length, no padding to 256
    text = {key: value.to(device) for key, value in text.items()}
    print(f"  prompt {caption!r}: {text['input_ids'].shape[1]} tokens (not padded)", flush=True)
    height, width = args.height, args.width
    pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(args.seed)).to(device)
    pixel_mask = torch.ones(1, height, width, dtype=torch.long, device=device)
    postprocess = build_grounding_dino_postprocess(tokenizer)

    def step(timings: Timings) -> None:
        synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            outputs = model(pixel_values=pixel_values, pixel_mask=pixel_mask, input_ids=text["input_ids"],
                            attention_mask=text["attention_mask"], token_type_ids=text["token_type_ids"])
            synchronize(device)
            forward_done = time.perf_counter()
            if postprocess is not None:
                postprocess(outputs, text["input_ids"], threshold=0.35, text_threshold=0.25,
                            target_sizes=[(height, width)])
                synchronize(device)
        finished = time.perf_counter()
        timings.add("total", finished - started)
        timings.add("forward", forward_done - started)
        timings.add("post", finished - forward_done)

    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        return run_repeats("Grounding DINO", step, args.warmup, args.repeats, device)
    except Exception as error:
        print(f"  Grounding DINO forward failed: {type(error).__name__}: {error}", flush=True)
        traceback.print_exc()
        return None


# ------------------------------------------------------------------------------------------- report


def print_report(args: argparse.Namespace, device: torch.device, glip: Timings,
                 dino: Timings | None, dino_skipped_reason: str | None) -> None:
    pad_h, pad_w = padded_size(args.height, args.width)
    rows: list[tuple[str, list[float]]] = [
        ("GLIP-T end-to-end (forward + post)", glip.phases["total"]),
        ("  image side (encode_images)", glip.phases["image"]),
        ("  rest (text + head + post)", glip.phases["rest"]),
        ("    text + head (rest of forward)", glip.phases["text+head"]),
        ("    post-processing (ATSS + NMS)", glip.phases["post"]),
    ]
    if dino is not None:
        rows += [
            ("Grounding-DINO-T end-to-end", dino.phases["total"]),
            ("  forward", dino.phases["forward"]),
            ("  post-processing", dino.phases["post"]),
        ]

    print()
    print("=" * 72)
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}")
    if device.type == "cuda":
        print(f"device: cuda ({torch.cuda.get_device_name(device)}), float32, "
              f"TF32 matmul={torch.backends.cuda.matmul.allow_tf32} cudnn={torch.backends.cudnn.allow_tf32}")
    else:
        print(f"device: cpu ({platform.processor() or 'unknown'}; {os.cpu_count()} logical CPUs), float32")
    print(f"threads: {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op"
          f"{'' if args.threads is not None else ' (torch default)'}")
    print(f"input: image {args.height}x{args.width} (GLIP padded to {pad_h}x{pad_w}); "
          f"prompt {len(CLASS_NAMES)} classes; batch 1")
    print(f"repeats: {args.repeats} timed after {args.warmup} warm-up")
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()
        print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other processes on the same "
              f"CPUs make these figures noisy)")
    print("-" * 72)
    width = max(len(name) for name, _ in rows)
    print(f"{'model':<{width}}  {'median s/img':>12}  {'min s/img':>10}")
    for name, values in rows:
        print(f"{name:<{width}}  {statistics.median(values):>12.3f}  {min(values):>10.3f}")
    print("-" * 72)
    if dino is not None:
        ratio_median = statistics.median(glip.phases["total"]) / statistics.median(dino.phases["total"])
        ratio_min = min(glip.phases["total"]) / min(dino.phases["total"])
        print(f"ratio GLIP-T / Grounding-DINO-T (end-to-end): median {ratio_median:.2f}, min {ratio_min:.2f}")
    else:
        print(f"Grounding-DINO-T: not timed ({dino_skipped_reason})")
    share = statistics.median(glip.phases["image"]) / statistics.median(glip.phases["total"])
    print(f"GLIP-T image side share of end-to-end (median): {share:.0%}; each further prompt chunk of the "
          f"same image costs about the 'rest' row")
    print("=" * 72)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads", flush=True)

    glip = benchmark_glip(args, device)
    dino = None
    reason = None
    if args.skip_grounding_dino:
        reason = "--skip-grounding-dino"
    else:
        dino = benchmark_grounding_dino(args, device)
        if dino is None:
            reason = "could not be built or run with this transformers version, see above"
    print_report(args, device, glip, dino, reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
