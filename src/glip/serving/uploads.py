"""Uploaded images: size limits before reading and decoding, then decoding with clear refusals.

Two limits protect the server: `BodySizeLimit` refuses a request body over ``max_bytes`` (from its
``Content-Length``, or while it streams in) before it is stored, and `decode_upload` reads the
picture's width and height from its header and refuses one over ``max_pixels`` before decoding
it, so a small file that unpacks to gigabytes (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings

from PIL import Image, UnidentifiedImageError

from glip.images import ImageError, load_image


class UploadError(ValueError):
    """A request the server refuses; ``status_code`` is the HTTP status to answer with."""

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


def decode_base64(data: str) -> bytes:
    """The bytes of a base64 string, with or without a ``data:image/...;base64,`` prefix."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UploadError(f"image is not valid base64 ({error}): send the file's bytes base64-encoded") from error


def decode_upload(data: bytes, max_pixels: int, name: str = "image") -> Image.Image:
    """Decode an uploaded file into an RGB picture, refusing it early when it cannot be served.

    Raises:
        UploadError: 422 for an empty file or one that is not a (readable) image; 413 for one of
            more than ``max_pixels`` pixels, found from the header before decoding.
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return load_image(image, name=name)
    except ImageError as error:
        raise UploadError(str(error)) from error


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
