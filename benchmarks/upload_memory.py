"""Resident memory of ``glip serve`` under bursts of large uploads.

Usage::

    python benchmarks/upload_memory.py [--clients 40] [--bursts 2] [--width 6000 --height 4000]
                                       [--serve-arg=--max-decodes=2 ...]

Starts ``glip serve`` (the embedded default model, CPU unless ``--device``) on a free loopback port,
sends one small warm-up request, then ``--bursts`` bursts of ``--clients`` concurrent multipart
uploads of one large PNG (a shapes picture of ``--width`` x ``--height``, a few tens of kB on the
wire, 72 MB once decoded at 6000x4000) and prints the server's resident size (``VmRSS`` of
``/proc/PID/status``, sampled every 20 ms): the baseline after warm-up, the peak during each burst
and the size once the server is idle again (nothing queued or running, then ``--settle`` seconds).
It also prints the answers by HTTP status and checks that every answer has the picture's size.
Linux only (``/proc``). The server is started with this Python, so ``PYTHONPATH`` chooses the
checkout being measured.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from local_server import start_server, stop_server
from PIL import Image, ImageDraw

CLASSES = "star, square, hexagon, cross, circle, triangle"


def large_png(width: int, height: int) -> bytes:
    """A flat picture with a few big shapes: compresses to tens of kB, decodes to width*height*3 bytes."""
    image = Image.new("RGB", (width, height), (232, 228, 220))
    draw = ImageDraw.Draw(image)
    unit = min(width, height) // 8
    for index, colour in enumerate([(200, 40, 40), (40, 120, 200), (40, 160, 60), (230, 180, 30)]):
        x, y = (1 + 2 * index) * unit, (2 + index % 2 * 3) * unit
        if index % 2:
            draw.ellipse((x, y, x + 2 * unit, y + 2 * unit), fill=colour)
        else:
            draw.rectangle((x, y, x + 2 * unit, y + 2 * unit), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="classes"\r\n\r\n{CLASSES}\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="threshold"\r\n\r\n0.3\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="large.png"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n", f"--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(url: str, data: bytes, timeout: float) -> tuple[int | str, dict]:
    body, content_type = multipart(data)
    request = urllib.request.Request(url + "/v1/detect", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except OSError as error:
        return type(error).__name__, {}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class PeakSampler:
    """Samples a process's RSS every ``interval_s`` in a thread; ``peak`` since the last ``reset``."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid, self.interval_s, self.peak = pid, interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, RuntimeError):
                return

    def reset(self) -> None:
        self.peak = rss_mb(self.pid)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def wait_idle(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = get_json(url + "/healthz")
        if health.get("waiting", 0) == 0 and health.get("running", 0) == 0:
            return
        time.sleep(0.1)


def burst(url: str, data: bytes, args: argparse.Namespace, size: tuple[int, int]) -> tuple[dict, float]:
    """``args.clients`` uploads at once; answers by status, and the seconds until the last one."""
    start = threading.Barrier(args.clients)

    def client(_):
        start.wait()
        return post(url, data, args.timeout)

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        answers = list(pool.map(client, range(args.clients)))
    seconds = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for status, body in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200 and (body["width"], body["height"]) != size:
            raise RuntimeError(f"an answer has size {body['width']}x{body['height']}, not {size[0]}x{size[1]}")
    return statuses, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=40, help="concurrent uploads per burst (default 40)")
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading the size after")
    parser.add_argument("--timeout", type=float, default=300.0, help="client timeout per request, seconds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--serve-arg", action="append", default=[], help="passed to glip serve (repeatable)")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 64 and 1 <= args.bursts <= 5):
        print("error: keep it bounded: 1..64 clients, 1..5 bursts", file=sys.stderr)
        return 2
    data = large_png(args.width, args.height)
    process, url = start_server(["--device", args.device, *args.serve_arg])
    sampler = PeakSampler(process.pid)
    try:
        if post(url, small_png(), args.timeout)[0] != 200:
            raise RuntimeError("the warm-up request failed")
        wait_idle(url)
        time.sleep(args.settle)
        baseline = rss_mb(process.pid)
        print(f"{args.clients} concurrent uploads of a {args.width}x{args.height} PNG ({len(data) / 1024:.0f} KiB, "
              f"{args.width * args.height * 3 / 2**20:.0f} MiB decoded) per burst; glip serve "
              f"{' '.join(args.serve_arg) or '(defaults)'}", flush=True)
        print(f"baseline after warm-up: {baseline:.0f} MiB", flush=True)
        for index in range(1, args.bursts + 1):
            sampler.reset()
            statuses, seconds = burst(url, data, args, (args.width, args.height))
            wait_idle(url)
            time.sleep(args.settle)
            after = rss_mb(process.pid)
            print(f"burst {index}: answers {statuses} in {seconds:.1f} s; RSS peak {sampler.peak:.0f} MiB, "
                  f"after (idle + {args.settle:g} s) {after:.0f} MiB", flush=True)
        health = get_json(url + "/healthz")
        print("healthz:", json.dumps({k: health[k] for k in ("requests", "stats", "memory_releases") if k in health}
                                     or health["stats"]))
    finally:
        sampler.close()
        stop_server(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
