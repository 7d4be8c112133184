"""A client that goes away: on a real uvicorn server (the TestClient cannot hang up), the request's
running work is stopped between prompt chunks and the next request is answered at once."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.request

import pytest

from serving_support import image_bytes, slow_for, uvicorn_server

pytest.importorskip("uvicorn", reason="needs the serve extra: pip install -e '.[serve]'")


@pytest.fixture()
def server(predictor):
    """uvicorn on a free loopback port in a background thread around the tiny predictor."""
    from glip.serving.app import create_app
    from glip.serving.config import ServeConfig

    with uvicorn_server(create_app(predictor, ServeConfig(max_batch=1, batch_window_ms=0))) as port:
        yield port


def _health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        return json.loads(response.read())


def _body(classes: list[str]) -> bytes:
    return json.dumps({"image": base64.b64encode(image_bytes(64, seed=30)).decode(), "classes": classes,
                       "threshold": 0.3}).encode()


def test_a_client_that_hangs_up_has_its_work_stopped(server, predictor, monkeypatch):
    seen = slow_for(predictor, monkeypatch, chunk_s=0.2)
    body = _body(["slowpoke"])
    with socket.create_connection(("127.0.0.1", server), timeout=10) as connection:
        connection.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert seen["started"].wait(10), "the slow request never reached the model"
    # the connection is closed: the server notices within its poll, the model within a chunk
    deadline = time.monotonic() + 10
    while not seen["cancelled"].is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen["cancelled"].is_set(), "the work of a client that went away was not stopped"
    started = time.perf_counter()
    request = urllib.request.Request(f"http://127.0.0.1:{server}/v1/detect", data=_body(["star", "square"]),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    assert time.perf_counter() - started < 5.0
    health = _health(server)
    assert health["requests"]["disconnected"] == 1 and health["requests"]["ok"] == 1
    assert health["stats"]["abandoned"] == 1 and health["stats"]["stopped"] == 1
    assert health["requests"]["server_errors"] == 0 and health["requests"]["timed_out"] == 0
