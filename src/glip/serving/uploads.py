"""Uploaded images: size limits before reading and decoding, then decoding with clear refusals.

Two limits protect the server: `BodySizeLimit` refuses a request body over ``max_bytes`` (from its
``Content-Length``, or while it streams in) before it is stored, and `decode_upload` reads the
picture's width and height from its header and refuses one over ``max_pixels`` before decoding
it, so a small file that unpacks to gigabytes (a decompression bomb) costs nothing. A decoded
picture is shrunk at once to the model's input size (`DecodedImage`): what waits in the queue is
small whatever was uploaded, and boxes are scaled back to the uploaded picture's pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ValidationError

from glip.images import ImageError, PreprocessConfig, load_image, resized_size


class UploadError(ValueError):
    """A request the server refuses; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


def validation_message(error: ValidationError) -> str:
    """One line naming each invalid field of a request."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()]
    return "invalid request: " + "; ".join(parts)


def form_fields(names: tuple[str, ...], repeated: tuple[str, ...] = ()) -> Callable[[Any], dict]:
    """A `read_request` form reader taking the fields ``names`` (the last value of each, all values
    of those in ``repeated``); absent fields are left to the options model's defaults."""

    def read(form: Any) -> dict:
        found = {name: form.getlist(name) for name in names}
        return {name: (values if name in repeated else values[-1]) for name, values in found.items() if values}

    return read


async def read_request(request: Any, json_model: type[BaseModel], form_model: type[BaseModel],
                       form_values: Callable[[Any], dict], max_fields: int = 64) -> tuple[Any, bytes, str | None]:
    """The options, the image bytes and the file name of one endpoint's request: JSON validated by
    ``json_model`` (base64 ``image``), or a multipart form (an ``image`` file) whose other fields
    ``form_values`` turns into the dict that ``form_model`` validates. Raises `UploadError`."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = json_model.model_validate_json(await request.body())
        except ValidationError as error:
            raise UploadError(validation_message(error)) from error
        return body, decode_base64(body.image), None
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=max_fields) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise UploadError("no image: send the picture as a file in the form field 'image'")
            try:
                options = form_model.model_validate(form_values(form))
            except ValidationError as error:
                raise UploadError(validation_message(error)) from error
            return options, await upload.read(), upload.filename
    raise UploadError(f"unsupported content type '{content_type or 'none'}': send multipart/form-data with an "
                      "'image' file, or application/json with base64 'image'", status_code=415)


def decode_base64(data: str) -> bytes:
    """The bytes of a base64 string, with or without a ``data:image/...;base64,`` prefix."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UploadError(f"image is not valid base64 ({error}): send the file's bytes base64-encoded") from error


@dataclass
class DecodedImage:
    """An upload, decoded and shrunk to what the model needs.

    Attributes:
        pixels: RGB picture of at most the model's input size (the size the predictor would resize
            it to), so a queued request holds kilobytes, not the camera's megapixels.
        original_size: (width, height) of the uploaded picture as displayed (EXIF orientation
            applied): the frame of the boxes sent back.
    """

    pixels: Image.Image
    original_size: tuple[int, int]

    def to_original(self, result: dict) -> dict:
        """A detection result on ``pixels`` (``ImageDetections.to_dict()``) in original-image pixels
        (boxes scaled, masks resized)."""
        width, height = self.original_size
        scale_x, scale_y = width / self.pixels.width, height / self.pixels.height
        detections = [{**d, "bbox_xyxy": [round(v * s, 2) for v, s in zip(d["bbox_xyxy"], (scale_x, scale_y) * 2)]}
                      for d in result["detections"]]
        if (width, height) != self.pixels.size:
            for detection in detections:
                if "segmentation" in detection:
                    detection.update(_resized_mask(detection["segmentation"], width, height))
        return {**result, "width": width, "height": height, "detections": detections}


def _resized_mask(rle: dict, width: int, height: int) -> dict:
    """A COCO RLE mask enlarged (or reduced) to ``width`` x ``height``: bilinear on 0/255, cut at
    half, so edges stay smooth; its ``segmentation`` and ``mask_area``. One mask at a time."""
    from glip.data.masks import mask_to_rle, rle_to_mask

    mask = Image.fromarray(rle_to_mask(rle).astype(np.uint8) * 255)
    resized = np.asarray(mask.resize((width, height), Image.Resampling.BILINEAR)) >= 128  # [height, width]
    return {"segmentation": mask_to_rle(resized), "mask_area": int(resized.sum())}


def decode_upload(data: bytes, max_pixels: int, name: str = "image",
                  input_size: PreprocessConfig | None = None) -> DecodedImage:
    """Decode an uploaded file into an RGB picture, refusing it early when it cannot be served.

    With ``input_size`` (the model's preprocessing) the picture is shrunk right after decoding to
    the size the predictor resizes it to, with the predictor's own filter, so the model sees the
    same pixels while only one full-resolution copy ever exists, briefly. A JPEG is decoded at a
    reduced scale (``Image.draft``, at least twice the input size) which is cheaper still but not
    bit-identical to decoding it whole. Pictures smaller than the input are kept as they are.

    Raises:
        UploadError: 422 for an empty file or one that is not a (readable) image; 413 for one of
            more than ``max_pixels`` pixels, found from the header before decoding.

    Example:
        >>> data = open("photo-6000x4000.png", "rb").read()  # doctest: +SKIP
        >>> decoded = decode_upload(data, 25_000_000, input_size=PreprocessConfig(320, 640))  # doctest: +SKIP
        >>> decoded.pixels.size, decoded.original_size  # doctest: +SKIP
        ((480, 320), (6000, 4000))
    """
    if not data:
        raise UploadError(f"{name}: empty file (0 bytes): upload the image file itself")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as error:
        raise UploadError(f"{name}: {error}; this server takes at most {max_pixels / 1e6:g} megapixels: "
                          "downscale the image", status_code=413) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UploadError(f"{name}: not an image or corrupt (PIL cannot identify the format); "
                          "upload a PNG, JPEG, WebP, BMP or similar file") from error
    width, height = image.size
    if width * height > max_pixels:
        raise UploadError(f"{name}: {width}x{height} is {width * height / 1e6:.1f} megapixels; this server takes "
                          f"at most {max_pixels / 1e6:g} megapixels: downscale the image", status_code=413)
    if input_size is not None and image.format == "JPEG":
        target_h, target_w = resized_size(width, height, input_size.min_size, input_size.max_size)
        if 2 * target_w < width and 2 * target_h < height:
            image.draft(None, (2 * target_w, 2 * target_h))  # DCT scaling: 1/2, 1/4 or 1/8, never below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = load_image(image, name=name)
    except ImageError as error:
        raise UploadError(str(error)) from error
    original_size = _displayed_size((width, height), picture.size)
    if input_size is None:
        return DecodedImage(picture, original_size)
    return DecodedImage(_shrink(picture, input_size), original_size)


def _displayed_size(header_size: tuple[int, int], decoded_size: tuple[int, int]) -> tuple[int, int]:
    """The header's (width, height), swapped when the EXIF orientation turned the picture by 90 degrees
    (the decoded picture may be smaller than the header says, after ``draft``, but keeps its shape)."""
    (width, height), (decoded_w, decoded_h) = header_size, decoded_size
    turned = width != height and (width > height) != (decoded_w > decoded_h)
    return (height, width) if turned else (width, height)


def _shrink(picture: Image.Image, input_size: PreprocessConfig) -> Image.Image:
    """``picture`` resized to the predictor's input size when that is smaller (what `preprocess` does)."""
    new_h, new_w = resized_size(picture.width, picture.height, input_size.min_size, input_size.max_size)
    if new_w * new_h >= picture.width * picture.height:
        return picture  # the predictor enlarges it; nothing to save
    return picture.resize((new_w, new_h), Image.Resampling.BILINEAR)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: answer 413 to a request whose body exceeds ``max_bytes``.

    The declared ``Content-Length`` is checked first; a body without one (chunked) is counted as it
    arrives and cut off at the limit, so an oversized upload is never stored whole.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send, received)

    async def _refuse(self, send, size: int) -> None:
        detail = (f"request body of {size} bytes or more exceeds this server's limit of {self.max_bytes} bytes: "
                  "send a smaller image (or start the server with a larger --max-upload-mb)")
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
