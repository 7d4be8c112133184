"""Helpers of the serving tests: images as upload bytes, a header-only huge PNG, result comparison,
a model call that runs until it is cancelled, the app on a real uvicorn server."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

SCENE = Path(__file__).resolve().parents[2] / "examples" / "scene.png"  # a shapes-world scene (glip-nano's world), 320x320
CLASSES = ["circle", "square", "star"]  # the prompt of the API tests


def image_bytes(size: int, seed: int, fmt: str = "PNG") -> bytes:
    """A random square RGB picture of ``size`` px, encoded (different seeds: different pictures)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG header announcing ``width`` x ``height`` with a few bytes of data: tiny on the wire,
    enormous once decoded (what a decompression bomb looks like from the header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def assert_same_result(got: dict, expected: dict, score_tol: float = 1e-4, box_tol: float = 0.05) -> None:
    """Same image size, prompt and detections (up to float rounding between batch sizes)."""
    assert (got["width"], got["height"]) == (expected["width"], expected["height"])
    assert got["phrases"] == expected["phrases"] and got["caption"] == expected["caption"]
    assert len(got["detections"]) == len(expected["detections"])
    for a, b in zip(got["detections"], expected["detections"]):
        assert a["phrase"] == b["phrase"] and a["phrase_index"] == b["phrase_index"]
        assert abs(a["score"] - b["score"]) <= score_tol
        assert max(abs(x - y) for x, y in zip(a["bbox_xyxy"], b["bbox_xyxy"])) <= box_tol


def slow_for(predictor, monkeypatch, word: str = "slowpoke", chunk_s: float = 1.0) -> dict:
    """Make a prompt containing ``word`` run until cancelled, polling ``cancelled`` between "prompt
    chunks" of ``chunk_s`` as the predictor does (a 5,000-class request would take minutes); other
    prompts run the real model."""
    from glip.engine import DetectionCancelled

    seen = {"started": threading.Event(), "cancelled": threading.Event()}
    detect = predictor.detect

    def slow_detect(images, **options):
        if word not in (options.get("classes") or ()):
            return detect(images, **options)
        seen["started"].set()
        for _ in range(int(30 / chunk_s)):
            if options["cancelled"]():
                seen["cancelled"].set()
                raise DetectionCancelled("detection cancelled")
            threading.Event().wait(chunk_s)  # one prompt chunk
        raise AssertionError("the slow request was never cancelled")

    monkeypatch.setattr(predictor, "detect", slow_detect)
    return seen


@contextmanager
def uvicorn_server(app) -> Iterator[int]:
    """``app`` served by uvicorn on a free loopback port (a thread of this process); yields the port."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
