"""The HTTP API with FastAPI's TestClient: uploads good and bad, prompts, adapters, batching, 503, 504."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from serving_support import CLASSES, assert_same_result, huge_png_header, image_bytes

pytest.importorskip("fastapi", reason="the API tests need the serve extra: pip install -e '.[serve]'")


def _detect(client, data: bytes, filename: str = "picture.png", **fields):
    fields.setdefault("classes", ",".join(CLASSES))
    fields.setdefault("threshold", "0.3")
    return client.post("/v1/detect", files={"image": (filename, data, "image/png")}, data=fields)


def _single(predictor, data: bytes, threshold: float = 0.3) -> dict:
    """The predictor's own answer for one image alone (batch of one)."""
    from glip.serving.uploads import decode_upload

    return predictor.detect([decode_upload(data, 10**8)], classes=CLASSES, threshold=threshold)[0].to_dict()


def test_health_models_docs_and_page(make_client):
    client = make_client()
    assert client.get("/healthz").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models["model"]["name"] == "glip-tiny"
    assert models["adapters"] == [{"name": "task", "mode": "linear", "categories": ["triangle", "cross"],
                                   "num_parameters": 1}]
    assert client.get("/docs").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
    assert "phraseColour" in client.get("/static/app.js").text


def test_multipart_and_json_give_the_predictors_result(make_client, predictor):
    client = make_client()
    data = image_bytes(80, seed=1)
    response = _detect(client, data)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["image"] == "picture.png" and (result["width"], result["height"]) == (80, 80)
    assert result["phrases"] == CLASSES and result["detections"], "the tiny model should find something at 0.3"
    assert_same_result(result, _single(predictor, data))
    as_json = client.post("/v1/detect", json={"image": base64.b64encode(data).decode(), "classes": CLASSES,
                                              "threshold": 0.3})
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["detections"] == result["detections"] and as_json.json()["image"] is None
    data_url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert client.post("/v1/detect", json={"image": data_url, "classes": "circle, square, star",
                                           "threshold": 0.3}).json()["detections"] == result["detections"]


def test_caption_and_adapter(make_client):
    client = make_client()
    data = image_bytes(64, seed=2)
    response = _detect(client, data, classes="", caption="a red circle and a blue square",
                       phrases=["red circle", "blue square"])
    assert response.status_code == 200, response.text
    assert response.json()["phrases"] == ["red circle", "blue square"]
    tuned = client.post("/v1/detect", files={"image": ("x.png", data)}, data={"adapter": "task", "threshold": "0.2"})
    assert tuned.status_code == 200, tuned.text
    assert tuned.json()["phrases"] == ["triangle", "cross"]


def test_bad_uploads_are_refused_with_a_reason(make_client):
    client = make_client()
    not_image = _detect(client, b"this is a text file, not a picture", "notes.txt")
    assert not_image.status_code == 422 and "not an image" in not_image.json()["detail"]
    empty = _detect(client, b"", "empty.png")
    assert empty.status_code == 422 and "empty file (0 bytes)" in empty.json()["detail"]
    huge = _detect(client, huge_png_header(10_000, 5_000), "huge.png")  # 50 MP, a few hundred bytes
    assert huge.status_code == 413 and "10000x5000 is 50.0 megapixels" in huge.json()["detail"]
    truncated = _detect(client, image_bytes(64, seed=3)[:200], "cut.png")
    assert truncated.status_code == 422 and "corrupt" in truncated.json()["detail"]
    no_file = client.post("/v1/detect", data={"classes": "star"}, files={"other": ("a.png", b"x")})
    assert no_file.status_code == 422 and "form field 'image'" in no_file.json()["detail"]
    bad_base64 = client.post("/v1/detect", json={"image": "%%%", "classes": ["star"]})
    assert bad_base64.status_code == 422 and "base64" in bad_base64.json()["detail"]
    text = client.post("/v1/detect", content=b"hello", headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "multipart/form-data" in text.json()["detail"]


def test_body_size_limit(make_client):
    client = make_client(max_upload_bytes=4096)
    response = _detect(client, b"\0" * 8192)
    assert response.status_code == 413 and "limit of 4096 bytes" in response.json()["detail"]
    chunked = client.post("/v1/detect", content=iter([b"\0" * 3000] * 3),  # no Content-Length: counted
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "limit of 4096 bytes" in chunked.json()["detail"]
    assert _detect(client, image_bytes(16, seed=4)).status_code == 200  # a small one still passes


def test_bad_prompts(make_client):
    client = make_client()
    data = image_bytes(64, seed=5)
    empty = _detect(client, data, classes=" , ")
    assert empty.status_code == 422 and "empty prompt" in empty.json()["detail"]
    both = _detect(client, data, caption="a star")
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    unknown = _detect(client, data, classes="", adapter="nope")
    assert unknown.status_code == 404 and "unknown adapter 'nope' (adapters: task)" in unknown.json()["detail"]
    threshold = _detect(client, data, threshold="1.5")
    assert threshold.status_code == 422 and "threshold" in threshold.json()["detail"]
    phrase = _detect(client, data, classes="", caption="a star", phrases="moon")
    assert phrase.status_code == 422 and "moon" in phrase.json()["detail"]
    wrong_json = client.post("/v1/detect", json={"classes": ["star"]})
    assert wrong_json.status_code == 422 and "image" in wrong_json.json()["detail"]


def test_concurrent_requests_are_batched_without_cross_talk(make_client, predictor, monkeypatch):
    sizes: list[int] = []
    detect = predictor.detect

    def counting_detect(images, **options):
        sizes.append(len(images))
        assert options["batch_size"] == len(images)
        return detect(images, **options)

    monkeypatch.setattr(predictor, "detect", counting_detect)
    client = make_client(max_batch=4, batch_window_ms=3000)  # the batch goes as soon as 4 are there
    uploads = [image_bytes(size, seed=10 + size) for size in (64, 72, 80, 96)]  # all resized to 64x64
    start = threading.Barrier(len(uploads))

    def send(data):
        start.wait()
        return _detect(client, data)

    with ThreadPoolExecutor(len(uploads)) as pool:
        responses = list(pool.map(send, uploads))
    assert sizes == [4], f"expected one forward pass of 4 images, got batch sizes {sizes}"
    monkeypatch.setattr(predictor, "detect", detect)
    for data, response in zip(uploads, responses):
        assert response.status_code == 200, response.text
        assert_same_result(response.json(), _single(predictor, data))  # its own image's result, nobody else's
    assert client.get("/healthz").json()["stats"]["batch_sizes"] == {"4": 1}


def _blocking(predictor, monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Make the model call wait for ``release``; ``entered`` is set once a call is running."""
    entered, release = threading.Event(), threading.Event()
    detect = predictor.detect

    def blocked(images, **options):
        entered.set()
        release.wait(10)
        return detect(images, **options)

    monkeypatch.setattr(predictor, "detect", blocked)
    return entered, release


def test_queue_full_answers_503_with_retry_after(make_client, predictor, monkeypatch):
    entered, release = _blocking(predictor, monkeypatch)
    client = make_client(max_batch=1, batch_window_ms=0, queue_size=1, retry_after_s=3)
    data = image_bytes(64, seed=6)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_detect, client, data)
        assert entered.wait(10)
        queued = pool.submit(_detect, client, data)
        for _ in range(1000):  # until the second request waits in the queue
            if client.get("/healthz").json()["waiting"] == 1:
                break
            threading.Event().wait(0.01)
        refused = _detect(client, data)
        release.set()
        assert running.result().status_code == 200 and queued.result().status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
    assert "server busy" in refused.json()["detail"]


def test_timeout_answers_504(make_client, predictor, monkeypatch):
    entered, release = _blocking(predictor, monkeypatch)
    client = make_client(request_timeout_s=0.3)
    try:
        response = _detect(client, image_bytes(64, seed=7))
    finally:
        release.set()
    assert response.status_code == 504 and "no answer within 0.3 s" in response.json()["detail"]
    assert client.get("/healthz").json()["stats"]["timed_out"] == 1
