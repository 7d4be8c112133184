"""Inference latency, FLOPs and peak memory of GLIP-T against Hugging Face Grounding DINO (Swin-T), both
with random weights.

Usage::

    python benchmarks/latency.py [--device cpu|cuda] [--repeats N] [--warmup N] [--threads N]
                                 [--height 800 --width 1333] [--skip-grounding-dino] [--matmul-size 2048]
    python benchmarks/latency.py --tiny    # toy models at 64x96: checks the script in seconds

Four rows, each timed per image (batch of 1) in a process of its own:

* GLIP-T, model alone: ``model(images, input_ids, attention_mask)`` under ``torch.inference_mode()``
  followed by the ATSS post-processing (candidates + class-aware NMS). The input is the network
  input after preprocessing: a random ``[1, 3, H, W]`` tensor zero-padded to multiples of 32
  (800x1333 -> 800x1344) and a 4-class prompt padded to 256 tokens. The time spent in
  ``model.encode_images`` (Swin + FPN) is recorded inside that same call, so the "image side" and
  "rest" rows add up to the row; the rest (BERT, fused head, anchors, post-processing) is what every
  additional prompt chunk of the same image costs, since chunks reuse the image features.
* GLIP-T, user path: ``GLIPPredictor.detect(path, classes=[4 names])`` on a JPEG file of H x W
  (``examples/scene.png`` resized): decoding, preprocessing, the prompt on its real tokens (the
  predictor trims the padding), the model, post-processing and the result objects.
* Grounding DINO, model alone: ``GroundingDinoForObjectDetection(pixel_values, pixel_mask,
  input_ids, ...)`` with the default (Swin-T, BERT-base) config, the same image size (not padded,
  all-ones pixel mask) and the same prompt at its real length, then the processor's
  ``post_process_grounded_object_detection`` when it can be built.
* Grounding DINO, user path: the same JPEG opened with PIL, ``GroundingDinoProcessor(images, text)``,
  the model and the post-processing.

Besides the time, each row gets its FLOPs (`measures.count_flops`: PyTorch's FlopCounterMode plus
the deformable convolutions, counted by formula), GFLOP/s = FLOPs / median time, and the distance to
the arithmetic limit: median time / (FLOPs / the float32 matmul rate measured on this machine in the
same run). Peak memory is the row's own process's ``ru_maxrss``: Python, torch, the model's weights
and the largest working set of the runs (the resident set before the first run is printed beside
it); on CUDA also ``torch.cuda.max_memory_allocated``.

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
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from grounding_dino import prepare_grounding_dino  # noqa: E402
from measures import (FlopCount, MatmulRate, count_flops, current_rss_bytes, measure_matmul_rate,  # noqa: E402
                      peak_rss_bytes)
from PIL import Image  # noqa: E402

CLASS_NAMES = ["person", "bicycle", "car", "dog"]
SIZE_DIVISIBILITY = 32
SCENE = Path(__file__).resolve().parent.parent / "examples" / "scene.png"
ROWS = ("glip-model", "glip-user", "dino-model", "dino-user")


@dataclass
class Timings:
    """Seconds per repeat of each named phase, in the order phases were first recorded."""

    phases: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.phases.setdefault(name, []).append(seconds)


@dataclass
class RowResult:
    """One measured row: seconds per repeat ("total" and its parts), FLOPs and memory of its process."""

    name: str
    phases: dict[str, list[float]]  # "total" first, then the parts shown under the row
    flops: FlopCount
    peak_rss: int  # bytes, ru_maxrss of the row's process after the timed runs
    rss_before_runs: int | None  # bytes, resident set after building, before the first run
    cuda_peak: int | None = None  # bytes, torch.cuda.max_memory_allocated over the runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own default)")
    parser.add_argument("--height", type=int, default=None,
                        help="image height before padding (default 800; 64 with --tiny)")
    parser.add_argument("--width", type=int, default=None,
                        help="image width before padding (default 1333; 96 with --tiny)")
    parser.add_argument("--tiny", action="store_true",
                        help="glip-tiny and a toy Grounding DINO config at 64x96 with a 512 matmul: checks the "
                             "script in seconds (figures say nothing about the real models)")
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="side of the float32 matmul that measures the machine's rate (default 2048; 512 "
                             "with --tiny)")
    parser.add_argument("--skip-grounding-dino", action="store_true", help="time GLIP-T only")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights and image")
    parser.add_argument("--candidate-threshold", type=float, default=None,
                        help="override GLIP's post-processing candidate threshold (default: the config's "
                             "0.05, which random weights rarely pass; 0 makes every location a candidate, "
                             "the worst case for post-processing)")
    args = parser.parse_args(argv)
    args.height = args.height or (64 if args.tiny else 800)
    args.width = args.width or (96 if args.tiny else 1333)
    args.matmul_size = args.matmul_size or (512 if args.tiny else 2048)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.height < 1 or args.width < 1 or args.matmul_size < 1:
        parser.error("--height, --width and --matmul-size must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but torch.cuda.is_available() is False")
    return args


def glip_name(args: argparse.Namespace) -> str:
    return "glip-tiny" if args.tiny else "GLIP-T"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def padded_size(height: int, width: int) -> tuple[int, int]:
    def up(value: int) -> int:
        return (value + SIZE_DIVISIBILITY - 1) // SIZE_DIVISIBILITY * SIZE_DIVISIBILITY

    return up(height), up(width)


def run_repeats(name: str, step: Callable[[Timings], None], warmup: int, repeats: int) -> Timings:
    """Call ``step`` ``warmup`` times untimed, then ``repeats`` times, each recording its phases."""
    for index in range(warmup):
        started = time.perf_counter()
        step(Timings())
        print(f"  {name}: warm-up {index + 1}/{warmup} took {time.perf_counter() - started:.2f} s", flush=True)
    timings = Timings()
    for index in range(repeats):
        step(timings)
        print(f"  {name}: run {index + 1}/{repeats} took {timings.phases['total'][-1]:.2f} s", flush=True)
    return timings


def measure(name: str, step: Callable[[Timings], None], models: list[torch.nn.Module],
            args: argparse.Namespace, device: torch.device) -> RowResult:
    """Time ``step`` (warm-up + repeats), read the process's peak memory, then count its FLOPs once."""
    rss_before_runs = current_rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = run_repeats(name, step, args.warmup, args.repeats)
    peak_rss = peak_rss_bytes()  # before the counting call, which is no part of the timed runs
    cuda_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    flops = count_flops(lambda: step(Timings()), models)
    return RowResult(name, timings.phases, flops, peak_rss, rss_before_runs, cuda_peak)


# --------------------------------------------------------------------------------------------- GLIP


def build_glip(args: argparse.Namespace, device: torch.device):
    """The random GLIP model, its preprocessing set to leave an H x W picture at its size."""
    from glip.config import get_config
    from glip.modeling.glip import GLIP

    print(f"building {glip_name(args)} (random weights) ...", flush=True)
    torch.manual_seed(args.seed)
    config = get_config("glip-tiny" if args.tiny else "glip-t")
    # 800x1333 is what GLIP-T's own resizing (800, capped at 1333) gives; other sizes pass unresized.
    config.input = replace(config.input, min_size=min(args.height, args.width),
                           max_size=max(args.height, args.width))
    if args.candidate_threshold is not None:
        config.postprocess.candidate_threshold = args.candidate_threshold
    model = GLIP(config).eval().to(device)
    print(f"  {glip_name(args)} parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M", flush=True)
    return model


def time_encode_images(model, device: torch.device) -> list[float]:
    """Seconds of each ``model.encode_images`` call from now on, appended to the returned list.

    forward() and the detection engine look the method up on the instance, so an instance attribute
    wrapping it sees exactly the image side of each call."""
    seconds: list[float] = []
    encode_images = model.encode_images

    def timed_encode_images(batch: torch.Tensor):
        synchronize(device)
        started = time.perf_counter()
        features = encode_images(batch)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        return features

    model.encode_images = timed_encode_images
    return seconds


def glip_model_alone(args: argparse.Namespace, device: torch.device) -> RowResult:
    from glip.modeling.postprocess import PostProcessor
    from glip.prompts import build_class_prompt, tokenize_prompt

    model = build_glip(args, device)
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
    image_side = time_encode_images(model, device)
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
        timings.add("image side (encode_images)", image_side[0])
        timings.add("rest (text + head + post)", finished - started - image_side[0])
        timings.add("  text + head (rest of forward)", forward_done - started - image_side[0])
        timings.add("  post-processing (ATSS + NMS)", finished - forward_done)
        num_candidates.append(len(candidates))
        num_detections.append(len(detections))

    name = f"{glip_name(args)} model alone"
    row = measure(name, step, [model], args, device)
    print(f"  {name} post-processing (random weights, candidate threshold "
          f"{model.config.postprocess.candidate_threshold}): {num_candidates[-1]} candidates, "
          f"{num_detections[-1]} detections after NMS", flush=True)
    return row


def glip_user_path(args: argparse.Namespace, device: torch.device, picture: Path) -> RowResult:
    from glip.predictor import GLIPPredictor

    model = build_glip(args, device)
    predictor = GLIPPredictor(model, device=device)
    chunks = predictor.build_prompts(classes=CLASS_NAMES)
    print(f"  GLIPPredictor.detect: {len(chunks)} prompt chunk(s) of "
          f"{[chunk.tokens.num_tokens for chunk in chunks]} real tokens (padding trimmed)", flush=True)
    image_side = time_encode_images(model, device)
    num_detections: list[int] = []

    def step(timings: Timings) -> None:
        image_side.clear()
        synchronize(device)
        started = time.perf_counter()
        results = predictor.detect(str(picture), classes=CLASS_NAMES)
        synchronize(device)
        finished = time.perf_counter()
        timings.add("total", finished - started)
        timings.add("image side (encode_images)", sum(image_side))
        timings.add("rest (file, prompt, text, head, post)", finished - started - sum(image_side))
        num_detections.append(len(results[0].detections))

    name = f"{glip_name(args)} user path"
    row = measure(name, step, [model], args, device)
    print(f"  {name}: {num_detections[-1]} detections above the 0.5 threshold (random weights)", flush=True)
    return row


# ------------------------------------------------------------------------------------ the processes


def measure_row(kind: str, args: argparse.Namespace, picture: Path) -> RowResult | None:
    """Build and measure one row (`ROWS`) in this process; None when Grounding DINO cannot run."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if kind == "glip-model":
        return glip_model_alone(args, device)
    if kind == "glip-user":
        return glip_user_path(args, device, picture)
    prepared = prepare_grounding_dino(args, device, picture, CLASS_NAMES, user_path=kind == "dino-user")
    if prepared is None:
        return None
    name, step, model = prepared
    try:
        return measure(name, step, [model], args, device)
    except Exception as error:  # version differences: report GLIP alone
        print(f"  {name} failed: {type(error).__name__}: {error}", flush=True)
        traceback.print_exc()
        return None


def in_child(device: torch.device, function: Callable, *arguments):
    """``function(*arguments)`` in a fresh process, so that its ``ru_maxrss`` is its own.

    On a CPU the process is forked from this one, which has imported torch but computed nothing
    (a fork after OpenMP work may hang); CUDA cannot be used in a forked process, so there it is
    spawned (and imports torch again)."""
    context = multiprocessing.get_context("spawn" if device.type == "cuda" else "fork")
    with context.Pool(1) as pool:
        return pool.apply(function, arguments)


def matmul_rate(args: argparse.Namespace) -> MatmulRate:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return measure_matmul_rate(args.matmul_size, 3, torch.device(args.device))


def write_picture(folder: Path, height: int, width: int) -> Path:
    """A real picture file of H x W: the example scene resized, saved as JPEG."""
    path = folder / f"scene_{width}x{height}.jpg"
    with Image.open(SCENE) as scene:
        scene.convert("RGB").resize((width, height), Image.Resampling.BILINEAR).save(path, quality=90)
    return path


# ------------------------------------------------------------------------------------------- report


def _figure(value: float) -> str:
    return f"{value:.4g}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def print_table(rows: list[RowResult], matmul_flops_per_second: float) -> None:
    header = ("median s", "min s", "GFLOP", "GFLOP/s", "limit s", "x limit", "peak MiB", "before MiB")
    lines: list[tuple[str, tuple[str, ...]]] = []
    for row in rows:
        median = statistics.median(row.phases["total"])
        limit = row.flops.total / matmul_flops_per_second
        lines.append((row.name, (_figure(median), _figure(min(row.phases["total"])),
                                 _figure(row.flops.total / 1e9), _figure(row.flops.total / 1e9 / median),
                                 _figure(limit), _figure(median / limit), _mib(row.peak_rss),
                                 _mib(row.rss_before_runs))))
        for phase, seconds in row.phases.items():
            if phase != "total":
                lines.append((f"  {phase}", (_figure(statistics.median(seconds)), _figure(min(seconds)))))
    width = max(len(name) for name, _ in lines)
    print(f"{'row':<{width}}" + "".join(f"  {column:>10}" for column in header))
    for name, values in lines:
        print(f"{name:<{width}}" + "".join(f"  {value:>10}" for value in values))


def print_report(args: argparse.Namespace, device: torch.device, rows: dict[str, RowResult | None],
                 rates: list[MatmulRate], dino_skipped_reason: str | None) -> None:
    pad_h, pad_w = padded_size(args.height, args.width)
    measured = [row for row in rows.values() if row is not None]
    rate = max(r.flops_per_second for r in rates)
    print()
    print("=" * 110)
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}")
    if device.type == "cuda":
        print(f"device: cuda ({torch.cuda.get_device_name(device)}), float32, "
              f"TF32 matmul={torch.backends.cuda.matmul.allow_tf32} cudnn={torch.backends.cudnn.allow_tf32}")
    else:
        print(f"device: cpu ({platform.processor() or 'unknown'}; {os.cpu_count()} logical CPUs), float32")
    print(f"threads: {args.threads or torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op"
          f"{'' if args.threads is not None else ' (torch default)'}")
    print(f"input: image {args.height}x{args.width} (GLIP model alone: padded to {pad_h}x{pad_w}, 256-token "
          f"window; user paths: a JPEG file, real tokens); prompt {len(CLASS_NAMES)} classes; batch 1")
    print(f"repeats: {args.repeats} timed after {args.warmup} warm-up, each row in a process of its own")
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()
        print(f"load average now: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other processes on the same "
              f"CPUs make these figures noisy)")
    print(f"matmul rate (float32 torch.mm, {args.matmul_size}x{args.matmul_size} by {args.matmul_size}x"
          f"{args.matmul_size}, median of {len(rates[0].seconds)}): "
          + ", ".join(_figure(r.flops_per_second / 1e9) for r in rates)
          + f" GFLOP/s (before and after the rows); the limit uses {_figure(rate / 1e9)} GFLOP/s")
    print("-" * 110)
    print_table(measured, rate)
    print("-" * 110)
    print("GFLOP: FlopCounterMode (2 per multiply-add; elementwise ops count 0) + deformable convs by formula; "
          "GFLOP/s = GFLOP / median s")
    print("limit s = GFLOP / matmul rate (every FLOP at the rate of a large matmul); x limit = median s / limit s")
    print("peak MiB: ru_maxrss of the row's own process (Python, torch, weights and the largest working set); "
          "before MiB: its resident set before the first run")
    for row in measured:
        print(f"{row.name}: {_figure(row.flops.total / 1e9)} GFLOP, of which deformable convs "
              f"{_figure(row.flops.deform_conv / 1e9)}"
              + (f"; peak CUDA memory {row.cuda_peak / 2**30:.2f} GiB" if row.cuda_peak is not None else ""))
    print("-" * 110)
    for glip_kind, dino_kind, label in (("glip-model", "dino-model", "model alone"),
                                        ("glip-user", "dino-user", "user path")):
        glip, dino = rows.get(glip_kind), rows.get(dino_kind)
        if glip is not None and dino is not None:
            ratio_median = statistics.median(glip.phases["total"]) / statistics.median(dino.phases["total"])
            ratio_min = min(glip.phases["total"]) / min(dino.phases["total"])
            print(f"ratio {glip.name} / {dino.name}: median {_figure(ratio_median)}, min {_figure(ratio_min)}")
    if dino_skipped_reason is not None:
        print(f"Grounding DINO: not timed ({dino_skipped_reason})")
    glip = rows["glip-model"]
    if glip is not None:
        share = statistics.median(glip.phases["image side (encode_images)"]) / statistics.median(glip.phases["total"])
        print(f"{glip.name}: image side {share:.0%} of the row (median); each further prompt chunk of the same "
              f"image costs about the 'rest' row")
    print("=" * 110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    print(f"torch {torch.__version__} on {device}, threads: {args.threads or 'torch default'}", flush=True)
    # This process computes nothing itself: the rows and the matmul rate run in child processes.
    rates = [in_child(device, matmul_rate, args)]
    print(f"matmul rate: {rates[0].flops_per_second / 1e9:.1f} GFLOP/s", flush=True)
    kinds = ROWS[:2] if args.skip_grounding_dino else ROWS
    with tempfile.TemporaryDirectory() as folder:
        picture = write_picture(Path(folder), args.height, args.width)
        rows = {kind: in_child(device, measure_row, kind, args, picture) for kind in kinds}
    rates.append(in_child(device, matmul_rate, args))
    reason = None
    if args.skip_grounding_dino:
        reason = "--skip-grounding-dino"
    elif rows["dino-model"] is None or rows["dino-user"] is None:
        reason = "could not be built or run with this transformers version, see above"
    print_report(args, device, rows, rates, reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
