"""POST /v1/caption: multipart and JSON, grounded phrases in the upload's pixels, and a model
without a caption head (400)."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from serving_support import image_bytes


@pytest.fixture(scope="module")
def caption_client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from caption_model import caption_glip
    from glip.predictor import GLIPPredictor
    from glip.serving.app import create_app

    model = caption_glip(max_tokens=4)
    with TestClient(create_app(GLIPPredictor(model, device="cpu"))) as client:
        yield client


def test_caption_multipart_and_json(caption_client):
    data = image_bytes(96, seed=1)
    form = caption_client.post("/v1/caption", files={"image": ("pic.png", data, "image/png")}, data={"beam": "2"})
    assert form.status_code == 200, form.text
    body = form.json()
    assert body["image"] == "pic.png" and (body["width"], body["height"]) == (96, 96)
    assert isinstance(body["caption"], str) and body["phrases"] == [] and isinstance(body["truncated"], bool)
    as_json = caption_client.post("/v1/caption", json={"image": base64.b64encode(data).decode(), "beam": 2})
    assert as_json.status_code == 200 and as_json.json()["caption"] == body["caption"]
    assert caption_client.get("/v1/models").json()["model"]["caption_head"] is True
    paths = caption_client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/caption"]["post"]["requestBody"]["content"]) == {"multipart/form-data", "application/json"}


def test_grounded_boxes_are_in_upload_pixels(caption_client, monkeypatch):
    import glip.captioner as captioner

    monkeypatch.setattr(captioner, "decode_caption", lambda tokenizer, ids: "a red star above a blue ring")
    response = caption_client.post("/v1/caption", files={"image": ("big.png", image_bytes(200, seed=2), "image/png")},
                                   data={"grounded": "true"})
    assert response.status_code == 200, response.text
    phrases = response.json()["phrases"]
    assert [p["phrase"] for p in phrases] == ["a red star", "a blue ring"]
    for phrase in phrases:
        if phrase["bbox_xyxy"] is not None:
            assert all(0 <= v <= 200 for v in phrase["bbox_xyxy"])


def test_bad_requests(caption_client, make_client):
    bad_beam = caption_client.post("/v1/caption", files={"image": ("p.png", image_bytes(32, 3), "image/png")},
                                   data={"beam": "0"})
    assert bad_beam.status_code == 422
    no_head = make_client().post("/v1/caption", files={"image": ("p.png", image_bytes(32, 3), "image/png")})
    assert no_head.status_code == 400 and "no caption head" in no_head.json()["detail"]
