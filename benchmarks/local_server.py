"""``glip serve`` on a free loopback port, for the serving benchmarks (load.py, upload_memory.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(serve_args: list[str], ready_timeout_s: float = 120) -> tuple[subprocess.Popen, str]:
    """Start ``glip serve --host 127.0.0.1 --port P *serve_args``; return once /healthz answers."""
    port = free_port()
    command = [sys.executable, "-m", "glip.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"glip serve exited with {process.returncode}: {process.stderr.read().strip()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"glip serve did not answer /healthz within {ready_timeout_s:g} s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
