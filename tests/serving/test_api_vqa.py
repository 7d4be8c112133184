"""``POST /v1/vqa``: multipart and JSON requests answered as the predictor answers, the server's limits
(413), empty questions (422), a model without a VQA head (400), and /v1/models saying which it has."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from serving_support import image_bytes
from vqa_model import ANSWERS, save_vqa_glip

pytest.importorskip("fastapi", reason="the API tests need the serve extra: pip install -e '.[serve]'")


@pytest.fixture(scope="module")
def vqa_predictor(tmp_path_factory):
    from glip.predictor import GLIPPredictor

    predictor = GLIPPredictor.from_pretrained(save_vqa_glip(tmp_path_factory.mktemp("vqa") / "m.safetensors"),
                                              device="cpu")
    predictor.model.config.input = dataclasses.replace(predictor.model.config.input, min_size=64, max_size=64)
    return predictor


@pytest.fixture()
def vqa_client(vqa_predictor):
    from fastapi.testclient import TestClient

    from glip.serving.app import create_app
    from glip.serving.config import ServeConfig

    with TestClient(create_app(vqa_predictor, ServeConfig(max_prompt_chunks=3, max_prompt_chars=200))) as client:
        yield client


def test_answers_are_the_predictors(vqa_client, vqa_predictor):
    from glip.serving.uploads import decode_upload

    data = image_bytes(64, seed=2)
    questions = ["how many stars are there?", "is it red?"]
    response = vqa_client.post("/v1/vqa", files={"image": ("p.png", data, "image/png")},
                               data={"question": questions, "top_k": "2"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["image"], body["width"], body["height"]) == ("p.png", 64, 64)
    expected = vqa_predictor.answer(decode_upload(data, 10**8).pixels, questions, top_k=2)[0].to_dict()
    assert [qa["question"] for qa in body["qa"]] == questions
    for got, want in zip(body["qa"], expected["qa"]):
        assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in want["answers"]]
        assert all(a["answer"] in ANSWERS for a in got["answers"])
    payload = {"image": base64.b64encode(data).decode(), "questions": "is it red?", "top_k": 1}
    as_json = vqa_client.post("/v1/vqa", json=payload)
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["qa"][0]["answers"] == body["qa"][1]["answers"][:1]
    assert vqa_client.get("/v1/models").json()["model"]["vqa_head"] is True
    assert "/v1/vqa" in vqa_client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("fields, status, message", [
    ({"question": ["a?", "b?", "c?", "d?"]}, 413, "at most 3"),
    ({"question": ["is it " + "red " * 60 + "?"]}, 413, "characters"),
    ({"question": ["  "]}, 422, "question 1 is empty"),
    ({}, 422, "no question"),
    ({"question": ["is it red?"], "top_k": "0"}, 422, "top_k"),
])
def test_bad_requests_are_refused_before_the_model_runs(vqa_client, fields, status, message):
    response = vqa_client.post("/v1/vqa", files={"image": ("p.png", image_bytes(64, seed=3), "image/png")},
                               data=fields)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_a_model_without_a_head_answers_400(make_client):
    client = make_client()
    assert client.get("/v1/models").json()["model"]["vqa_head"] is False
    response = client.post("/v1/vqa", files={"image": ("p.png", image_bytes(64, seed=1), "image/png")},
                           data={"question": "is it red?"})
    assert response.status_code == 400 and "no VQA answer head" in response.json()["detail"]
    page = client.get("/").text
    assert 'id="question-input"' in page and 'id="ask-button"' in page


def test_the_page_script_parses():
    """Where Chromium is missing the browser test skips; Node.js still checks the page's script parses."""
    import shutil
    import subprocess

    from glip.serving.app import STATIC_DIR

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("Node.js is not installed")
    checked = subprocess.run([node, "--check", str(STATIC_DIR / "app.js")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    script = (STATIC_DIR / "app.js").read_text()
    assert 'fetch("/v1/vqa"' in script and "info.model.vqa_head" in script
