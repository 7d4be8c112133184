"""Instance masks through the HTTP API: ``masks=true`` (form field or JSON) gives each detection a
COCO RLE of the upload's size; a model without a mask head answers 400; /v1/models and the OpenAPI
schema say so."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from serving_support import CLASSES, image_bytes

pytest.importorskip("fastapi", reason="the API tests need the serve extra: pip install -e '.[serve]'")


def _detect(client, data: bytes, **fields):
    fields.setdefault("classes", ",".join(CLASSES))
    fields.setdefault("threshold", "0.3")
    return client.post("/v1/detect", files={"image": ("picture.png", data, "image/png")}, data=fields)


def _masks(result: dict) -> list[np.ndarray]:
    from glip.data.masks import rle_to_mask

    masks = []
    for detection in result["detections"]:
        mask = rle_to_mask(detection["segmentation"])
        assert mask.shape == (result["height"], result["width"]) and detection["mask_area"] == int(mask.sum())
        masks.append(mask)
    return masks


def test_models_say_whether_there_is_a_mask_head(make_client, make_masked_client):
    assert make_client().get("/v1/models").json()["model"]["mask_head"] is False
    client = make_masked_client()
    assert client.get("/v1/models").json()["model"]["mask_head"] is True
    page = client.get("/").text
    assert 'id="masks-input"' in page and "/static/rle.js" in page
    assert "rleDecode" in client.get("/static/rle.js").text and "masks" in client.get("/static/app.js").text


def test_masks_come_back_as_the_predictors_rles(make_masked_client, masked_predictor):
    from glip.serving.uploads import decode_upload

    client = make_masked_client()
    data = image_bytes(64, seed=1)  # the input size: no resizing on either side
    response = _detect(client, data, masks="true")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["detections"], "the tiny model should find something at 0.3"
    expected = masked_predictor.detect(decode_upload(data, 10**8).pixels, classes=CLASSES, threshold=0.3,
                                       masks=True)[0].to_dict()
    assert [d["segmentation"] for d in result["detections"]] == [d["segmentation"] for d in expected["detections"]]
    assert sum(mask.sum() for mask in _masks(result)) > 0
    as_json = client.post("/v1/detect", json={"image": base64.b64encode(data).decode(), "classes": CLASSES,
                                              "threshold": 0.3, "masks": True})
    assert as_json.status_code == 200 and as_json.json()["detections"] == result["detections"]
    plain = _detect(client, data)
    assert plain.status_code == 200
    assert all(set(d) == {"bbox_xyxy", "score", "phrase", "phrase_index"} for d in plain.json()["detections"])
    assert [d["bbox_xyxy"] for d in plain.json()["detections"]] == [d["bbox_xyxy"] for d in result["detections"]]
    assert _detect(client, data, masks="maybe").status_code == 422
    assert client.post("/v1/detect", json={"image": base64.b64encode(data).decode(), "classes": CLASSES,
                                           "masks": "yes"}).status_code == 422


def test_masks_are_resized_to_the_upload(make_masked_client):
    client = make_masked_client()
    response = _detect(client, image_bytes(200, seed=8), masks="true")  # shrunk to the 64 px input
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"]) == (200, 200) and result["detections"]
    scale = 200 / 64
    for detection, mask in zip(result["detections"], _masks(result)):
        ys, xs = np.nonzero(mask)
        if len(xs):  # inside the box, up to one input pixel enlarged
            x1, y1, x2, y2 = detection["bbox_xyxy"]
            assert x1 - scale <= xs.min() and xs.max() <= x2 + scale
            assert y1 - scale <= ys.min() and ys.max() <= y2 + scale


def test_a_model_without_a_mask_head_answers_400(make_client):
    client = make_client()
    data = image_bytes(64, seed=2)
    for response in (_detect(client, data, masks="true"),
                     client.post("/v1/detect", json={"image": base64.b64encode(data).decode(), "classes": CLASSES,
                                                     "masks": True})):
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert "mask head" in detail and "\n" not in detail
    assert client.get("/healthz").json()["requests"]["client_errors"] == 2
    assert _detect(client, data).status_code == 200


def test_openapi_documents_masks(make_masked_client):
    client = make_masked_client()
    post = client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]
    for kind in ("multipart/form-data", "application/json"):
        masks = post["requestBody"]["content"][kind]["schema"]["properties"]["masks"]
        assert masks["type"] == "boolean" and masks["default"] is False and "mask head" in masks["description"]
    assert "400" in post["responses"]
