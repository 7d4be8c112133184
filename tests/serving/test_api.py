"""The HTTP API with FastAPI's TestClient: uploads good and bad, prompts, adapters, batching, limits,
503, 504 and the work of a timed-out request being stopped, request counters, the OpenAPI schema."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from serving_support import CLASSES, assert_same_result, huge_png_header, image_bytes, slow_for

pytest.importorskip("fastapi", reason="the API tests need the serve extra: pip install -e '.[serve]'")


def _detect(client, data: bytes, filename: str = "picture.png", **fields):
    fields.setdefault("classes", ",".join(CLASSES))
    fields.setdefault("threshold", "0.3")
    return client.post("/v1/detect", files={"image": (filename, data, "image/png")}, data=fields)


def _single(predictor, data: bytes, threshold: float = 0.3) -> dict:
    """The predictor's own answer for one image alone (batch of one)."""
    from glip.serving.uploads import decode_upload

    return predictor.detect([decode_upload(data, 10**8).pixels], classes=CLASSES, threshold=threshold)[0].to_dict()


def test_health_models_docs_and_page(make_client, predictor):
    client = make_client(max_classes=7, max_prompt_chunks=3)
    assert client.get("/healthz").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models["model"]["name"] == "glip-tiny"
    assert models["adapters"] == [{"name": "task", "mode": "linear", "categories": ["triangle", "cross"],
                                   "num_parameters": 1}]
    limits = models["limits"]
    assert (limits["max_classes"], limits["max_prompt_chunks"], limits["max_prompt_chars"]) == (7, 3, 20_000)
    assert limits["max_caption_tokens"] == predictor.max_length and limits["max_pixels"] == 25_000_000
    assert client.get("/docs").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/static/app.js" in page.text
    assert "phraseColour" in client.get("/static/app.js").text and 'id="all-names-input"' in page.text
    assert "all_names" in client.get("/static/app.js").text


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
    with_caption = _detect(client, data, classes="", caption="a star", adapter="task")
    assert with_caption.status_code == 422 and "leave out the caption" in with_caption.json()["detail"]
    wrong_classes = _detect(client, data, classes="star", adapter="task")
    assert wrong_classes.status_code == 422 and "['triangle', 'cross']" in wrong_classes.json()["detail"]
    unknown = _detect(client, data, classes="", adapter="nope")
    assert unknown.status_code == 404 and "unknown adapter 'nope' (adapters: task)" in unknown.json()["detail"]
    threshold = _detect(client, data, threshold="1.5")
    assert threshold.status_code == 422 and "threshold" in threshold.json()["detail"]
    phrase = _detect(client, data, classes="", caption="a star", phrases="moon")
    assert phrase.status_code == 422 and "moon" in phrase.json()["detail"]
    wrong_json = client.post("/v1/detect", json={"classes": ["star"]})
    assert wrong_json.status_code == 422 and "image" in wrong_json.json()["detail"]


def test_boxes_come_back_in_the_pixels_of_the_upload(make_client, predictor):
    client = make_client()
    data = image_bytes(200, seed=8)  # shrunk to the 64 px input right after decoding
    response = _detect(client, data, threshold="0.2")
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"]) == (200, 200) and result["detections"]
    assert_same_result(result, _single(predictor, data, threshold=0.2))  # the whole picture through the predictor
    assert max(v for d in result["detections"] for v in d["bbox_xyxy"]) > 64  # not in the 64 px frame


def test_all_names_reaches_the_predictor(make_client, predictor, monkeypatch):
    seen: list[bool] = []
    detect = predictor.detect

    def recording_detect(images, **options):
        seen.append(options["all_names"])
        return detect(images, **options)

    monkeypatch.setattr(predictor, "detect", recording_detect)
    client = make_client()
    data = image_bytes(64, seed=9)
    everything = _detect(client, data, all_names="true")
    default = _detect(client, data)
    as_json = client.post("/v1/detect", json={"image": base64.b64encode(data).decode(), "classes": CLASSES,
                                              "threshold": 0.3, "all_names": True})
    assert (everything.status_code, default.status_code, as_json.status_code) == (200, 200, 200)
    assert seen == [True, False, True]
    assert len(everything.json()["detections"]) >= len(default.json()["detections"])
    assert _detect(client, data, all_names="maybe").status_code == 422


def test_limits_refuse_too_much_before_the_model_runs(make_client, predictor, monkeypatch):
    calls: list[int] = []
    detect = predictor.detect
    monkeypatch.setattr(predictor, "detect", lambda images, **options: calls.append(1) or detect(images, **options))
    client = make_client(max_classes=50, max_prompt_chars=400, max_prompt_chunks=2)
    data = image_bytes(64, seed=11)
    too_many = _detect(client, data, classes=",".join(f"c{i}" for i in range(51)))
    assert too_many.status_code == 413 and "51 classes in one request; this server takes at most 50" in \
        too_many.json()["detail"]
    as_json = client.post("/v1/detect", json={"image": base64.b64encode(data).decode(),
                                              "classes": [f"c{i}" for i in range(51)]})
    assert as_json.status_code == 413 and "51 classes" in as_json.json()["detail"]
    long_text = _detect(client, data, classes="x" * 401)
    assert long_text.status_code == 413 and "401" in long_text.json()["detail"] and "characters" in \
        long_text.json()["detail"]
    names = [f"shape number {i}" for i in range(150)]  # 4 tokens each and a "."
    chunks = len(predictor.build_prompts(names))
    assert chunks > 2, "the test needs a class list of more than two chunks"
    client = make_client(max_classes=200, max_prompt_chunks=2)
    chunked = _detect(client, data, classes=",".join(names))
    assert chunked.status_code == 413 and f"make {chunks} prompt chunks" in chunked.json()["detail"]
    window = predictor.max_length
    caption = " ".join(["star"] * window)  # window + 2 tokens with [CLS] and [SEP]
    long_caption = _detect(client, data, classes="", caption=caption)
    assert long_caption.status_code == 413 and f"the model reads at most {window}" in long_caption.json()["detail"]
    assert calls == [], "a request over a limit must be refused before the model runs"
    fits = _detect(client, data, classes=",".join(names[:3]))
    assert fits.status_code == 200 and calls == [1]
    counts = client.get("/healthz").json()["requests"]
    assert counts == {"ok": 1, "client_errors": 2, "server_errors": 0, "busy": 0, "timed_out": 0,
                      "disconnected": 0}


def test_client_errors_are_not_server_failures(make_client):
    client = make_client()
    data = image_bytes(64, seed=12)
    for response in (_detect(client, b"not a picture", "notes.txt"), _detect(client, data, classes=" , "),
                     _detect(client, data, classes="", caption="a star", phrases="moon"),
                     _detect(client, data, threshold="2"), _detect(client, data, classes="", adapter="nope")):
        assert 400 <= response.status_code < 500, response.text
    assert _detect(client, data).status_code == 200
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["requests"]["client_errors"] == 5 and health["requests"]["ok"] == 1
    assert health["requests"]["server_errors"] == 0 and health["stats"]["errors"] == 0


def test_openapi_schema_says_what_the_server_accepts(make_client):
    jsonschema = pytest.importorskip("jsonschema")
    client = make_client(max_classes=3)
    content = client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    schema = content["application/json"]["schema"]
    image = {"image": "aGVsbG8="}
    accepted = [{"classes": ["star"]}, {"classes": "star, square"}, {"caption": "a star", "phrases": ["star"]},
                {"adapter": "task"}, {"adapter": "task", "classes": ["triangle", "cross"]},
                {"classes": ["star"], "threshold": 0, "all_names": True}]
    refused = [{"classes": ["star"], "caption": "a star"}, {}, {"phrases": ["star"], "classes": ["star"]},
               {"caption": "a star", "adapter": "task"}, {"classes": ["star"], "threshold": 1.5},
               {"classes": ["a", "b", "c", "d"]}, {"caption": "a star", "all_names": "yes"}]
    validator = jsonschema.Draft202012Validator(schema)
    for body in accepted:
        assert validator.is_valid({**image, **body}), body
    for body in refused:
        assert not validator.is_valid({**image, **body}), body
    form = content["multipart/form-data"]["schema"]
    assert form["properties"]["all_names"]["type"] == "boolean" and form["oneOf"] == schema["oneOf"]
    # and the server agrees with the schema about the ones it refuses
    data = base64.b64encode(image_bytes(64, seed=13)).decode()
    for body in refused:
        assert client.post("/v1/detect", json={**body, "image": data}).status_code in (413, 422), body


def test_concurrent_requests_are_batched_without_cross_talk(make_client, predictor, monkeypatch):
    sizes: list[int] = []
    detect = predictor.detect

    def counting_detect(images, **options):
        sizes.append(len(images))
        assert options["batch_size"] == len(images)
        return detect(images, **options)

    monkeypatch.setattr(predictor, "detect", counting_detect)
    # The batch goes as soon as 4 are there: the long window only bounds how far apart the four may
    # arrive on a loaded machine (3 s once proved too short in a full-suite run), it costs no time.
    client = make_client(max_batch=4, batch_window_ms=30000)
    uploads = [image_bytes(size, seed=10 + size) for size in (64, 72, 80, 96)]  # all resized to 64x64
    start = threading.Barrier(len(uploads))

    def send(data):
        start.wait()
        return _detect(client, data)

    with ThreadPoolExecutor(len(uploads)) as pool:
        responses = list(pool.map(send, uploads))
    statuses = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
    assert sizes == [4], f"expected one forward pass of 4 images, got batch sizes {sizes}; not 200: {statuses}"
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
    health = client.get("/healthz").json()
    assert health["stats"]["timed_out"] == 1 and health["requests"]["timed_out"] == 1


def test_a_timed_out_request_is_stopped_and_the_next_one_answered_promptly(make_client, predictor, monkeypatch):
    seen = slow_for(predictor, monkeypatch)
    client = make_client(max_batch=1, batch_window_ms=0, request_timeout_s=1.5)
    data = image_bytes(64, seed=14)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_detect, client, data, classes="slowpoke")
        assert seen["started"].wait(10)
        queued = pool.submit(_detect, client, data, classes="slowpoke, star")  # times out behind it
        assert running.result().status_code == 504 and queued.result().status_code == 504
    started = time.perf_counter()
    good = _detect(client, data)  # the worker is free again after at most one chunk (1 s)
    assert good.status_code == 200, good.text
    assert time.perf_counter() - started < 1.4, "the worker should be free again within one chunk"
    assert seen["cancelled"].is_set()
    health = client.get("/healthz").json()
    assert health["requests"]["timed_out"] == 2 and health["requests"]["ok"] == 1
    assert (health["stats"]["stopped"], health["stats"]["dropped"], health["stats"]["errors"]) == (1, 1, 0)
    assert health["requests"]["server_errors"] == 0 and health["running"] == 0


def test_decodes_run_at_most_max_decodes_at_a_time(make_client, monkeypatch):
    import glip.serving.app as app_module

    active, peak, lock = [0], [0], threading.Lock()
    decode = app_module.decode_upload

    def slow_decode(*args):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        threading.Event().wait(0.1)
        try:
            return decode(*args)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(app_module, "decode_upload", slow_decode)
    client = make_client(max_decodes=2)
    uploads = [image_bytes(64, seed=20 + i) for i in range(6)]
    with ThreadPoolExecutor(len(uploads)) as pool:
        responses = list(pool.map(lambda data: _detect(client, data), uploads))
    assert [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200] == []
    assert peak[0] == 2, f"{peak[0]} decodes ran at the same time; the limit is 2"
