"""Load test of ``glip serve``: throughput, latency percentiles, errors, batching gain, no cross-talk.

Usage::

    python benchmarks/load.py [--clients 4] [--seconds 10] [--max-batch 8] [--images 8]
    python benchmarks/load.py --url http://127.0.0.1:8000 [--clients 4] [--seconds 10]

Without ``--url`` the script starts ``glip serve`` (the embedded default model) twice on free
loopback ports, first with ``--max-batch 1`` and then with ``--max-batch N``, drives each with the
same clients for the same time, and prints the batching gain (throughput with batching over
without). With ``--url`` it drives that server once (loopback addresses only).

Every client sends distinct images (rotations and mirror images of the shapes scene of the serving
tests) as JSON with base64 data, and every answer is compared with the answer to that image sent
alone before the load started: an answer that matches another image, or none, is a cross-talk
error. The run is bounded: ``--seconds`` per setting and ``--max-requests`` per setting.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from local_server import start_server, stop_server
from PIL import Image

SCENE = Path(__file__).resolve().parents[1] / "examples" / "scene.png"
CLASSES = ["star", "square", "hexagon", "cross", "circle", "triangle"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Setting:
    """What one run against one server measured."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: dict[str, int] = field(default_factory=dict)  # HTTP status or exception name -> count
    mismatches: int = 0  # 200 answers that differ from the single-request answer for that image
    batch_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def scene_variants(count: int) -> list[bytes]:
    """``count`` distinct PNGs of one size: the scene turned by 0/90/180/270 degrees, mirrored or not."""
    base = Image.open(SCENE).convert("RGB")
    images = []
    for index in range(count):
        image = base.rotate(90 * (index % 4))
        if (index // 4) % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if index >= 8:  # beyond the 8 symmetries: shift the picture
            image = Image.fromarray(np.roll(np.asarray(image), 8 * (index // 8), axis=1))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def post_detect(url: str, payload: bytes, timeout: float) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/detect", data=payload, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def differs(got: dict, expected: dict, tolerance: float = 1e-3) -> bool:
    """True unless ``got`` is ``expected`` up to float rounding (batched vs single forward pass)."""
    if (got.get("width"), got.get("height"), got.get("phrases")) != (expected["width"], expected["height"],
                                                                     expected["phrases"]):
        return True
    pairs = list(zip(got.get("detections", []), expected["detections"]))
    if len(pairs) != len(expected["detections"]) or len(got["detections"]) != len(pairs):
        return True
    return any(a["phrase_index"] != b["phrase_index"] or abs(a["score"] - b["score"]) > tolerance
               or max(abs(x - y) for x, y in zip(a["bbox_xyxy"], b["bbox_xyxy"])) > 100 * tolerance
               for a, b in pairs)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN without values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def run_load(url: str, payloads: list[bytes], references: list[dict], args: argparse.Namespace, name: str) -> Setting:
    """``args.clients`` threads send requests for ``args.seconds`` (at most ``args.max_requests``)."""
    setting = Setting(name)
    lock = threading.Lock()
    sent = [0]
    deadline = time.monotonic() + args.seconds

    def client(client_id: int) -> None:
        turn = 0
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= args.max_requests:
                    return
                sent[0] += 1
            index = (client_id + turn * args.clients) % len(payloads)
            turn += 1
            started = time.perf_counter()
            try:
                status, body = post_detect(url, payloads[index], timeout=args.timeout)
            except (OSError, ValueError) as error:
                status, body = type(error).__name__, {}
            elapsed = time.perf_counter() - started
            with lock:
                if status == 200:
                    setting.latencies.append(elapsed)
                    setting.mismatches += differs(body, references[index])
                else:
                    setting.errors[str(status)] = setting.errors.get(str(status), 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    setting.seconds = time.perf_counter() - started
    with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
        setting.batch_sizes = json.loads(response.read())["stats"]["batch_sizes"]
    return setting


def start_server_for(max_batch: int, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    """``glip serve`` with the embedded model on a free loopback port; returns once /healthz answers."""
    serve_args = ["--max-batch", str(max_batch), "--batch-window-ms", str(args.batch_window_ms),
                  "--queue-size", str(max(64, 4 * args.clients))]
    if args.device:
        serve_args += ["--device", args.device]
    return start_server(serve_args)


def report(setting: Setting) -> None:
    ms = [v * 1000 for v in setting.latencies]
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(setting.errors.items())) or "none"
    print(f"{setting.name}: {len(ms)} ok in {setting.seconds:.1f} s = {setting.throughput:.2f} req/s; latency ms "
          f"p50 {percentile(ms, 50):.0f}  p95 {percentile(ms, 95):.0f}  p99 {percentile(ms, 99):.0f}; "
          f"errors {errors}; cross-talk mismatches {setting.mismatches}; "
          f"forward passes by batch size, incl. the single warm-up requests: {setting.batch_sizes}", flush=True)


def measure(url: str, payloads: list[bytes], references: list[dict] | None, args: argparse.Namespace,
            name: str) -> tuple[Setting, list[dict]]:
    """Single-request answers first (the reference, and warm-up), then the load."""
    answers = []
    for payload in payloads:
        status, body = post_detect(url, payload, timeout=args.timeout)
        if status != 200:
            raise RuntimeError(f"{name}: a single request failed with HTTP {status}")
        answers.append(body)
    references = references or answers
    warm_mismatches = sum(differs(a, r) for a, r in zip(answers, references))
    setting = run_load(url, payloads, references, args, name)
    setting.mismatches += warm_mismatches
    report(setting)
    return setting, references


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="drive this running server (loopback only) instead of starting two")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="load time per setting (default 10)")
    parser.add_argument("--max-requests", type=int, default=5000, help="cap per setting (default 5000)")
    parser.add_argument("--max-batch", type=int, default=8, help="the batched setting (default 8)")
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--images", type=int, default=8, help="distinct images (default 8)")
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request, seconds")
    parser.add_argument("--device", help="device of the started servers (default: theirs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (1 <= args.clients <= 64 and 0 < args.seconds <= 600 and 1 <= args.images <= 64):
        print("error: keep it bounded: 1..64 clients, at most 600 s, 1..64 images", file=sys.stderr)
        return 2
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        print(f"error: {args.url} is not a loopback address; this load test only drives 127.0.0.1/localhost",
              file=sys.stderr)
        return 2
    payloads = [json.dumps({"image": base64.b64encode(data).decode(), "classes": CLASSES,
                            "threshold": args.threshold}).encode() for data in scene_variants(args.images)]
    print(f"{args.clients} clients x {args.seconds:g} s per setting, {len(payloads)} distinct 320x320 images, "
          f"{len(CLASSES)} classes, CPU threads {os.cpu_count()}", flush=True)
    if args.url:
        setting, _ = measure(args.url.rstrip("/"), payloads, None, args, args.url)
        return 1 if setting.mismatches else 0
    results, references = [], None
    for max_batch in (1, args.max_batch):
        process, url = start_server_for(max_batch, args)
        try:
            setting, references = measure(url, payloads, references, args, f"--max-batch {max_batch}")
        finally:
            stop_server(process)
        results.append(setting)
    unbatched, batched = results
    gain = batched.throughput / unbatched.throughput if unbatched.throughput else float("nan")
    print(f"batching gain (--max-batch {args.max_batch} over --max-batch 1): {gain:.2f}x throughput")
    mismatches = sum(s.mismatches for s in results)
    print("cross-talk check: " + ("every answer matched its own image's single-request answer" if not mismatches
                                  else f"{mismatches} answers differ from their single-request answer"))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
