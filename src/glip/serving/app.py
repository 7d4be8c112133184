"""The HTTP API and web page: ``create_app(predictor, config)`` returns a FastAPI application.

Endpoints:
    ``POST /v1/detect``: one image (multipart file or base64 in JSON) and a prompt -> the
        predictor's detection JSON (`ImageDetections.to_dict`).
    ``GET /v1/models``: the base model and the loaded adapters.
    ``GET /healthz``: liveness plus queue and batching counters.
    ``GET /``: the web page (``static/``); ``/docs``: the OpenAPI documentation.

Images are decoded on the request's own thread; the model runs on one worker thread fed by a
`Batcher`, which groups concurrent requests with the same prompt, adapter and threshold.

Example:
    >>> import uvicorn  # doctest: +SKIP
    >>> app = create_app(GLIPPredictor.from_pretrained(None), ServeConfig(max_batch=8))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from glip import __version__
from glip.predictor import GLIPPredictor
from glip.serving.batcher import Batcher, QueueFullError
from glip.serving.config import ServeConfig
from glip.serving.schemas import (MULTIPART_SCHEMA, DetectJSONRequest, DetectKey, DetectOptions, DetectResponse,
                                  ErrorResponse, PromptError, detect_key)
from glip.serving.uploads import BodySizeLimit, UploadError, decode_base64, decode_upload

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    404: "unknown adapter", 413: "body or image too large", 415: "neither JSON nor a multipart form",
    422: "not an image, empty prompt, bad field", 503: "queue full (see Retry-After)", 504: "timed out"}.items()}


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_message(error: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()]
    return "invalid request: " + "; ".join(parts)


def make_run_batch(predictor: GLIPPredictor):
    """The model call of the batcher: one ``predictor.detect`` for a group of images sharing a key."""

    def run_batch(key: DetectKey, images: list[Image.Image]) -> list[dict]:
        results = predictor.detect(images, classes=list(key.classes) if key.classes else None, caption=key.caption,
                                   phrases=list(key.phrases) if key.phrases else None, threshold=key.threshold,
                                   batch_size=len(images), adapter=key.adapter)
        return [result.to_dict() for result in results]

    return run_batch


async def _read_request(request: Request, config: ServeConfig) -> tuple[DetectOptions, bytes, str | None]:
    """The options, the image bytes and the file name of a JSON or multipart detection request."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = DetectJSONRequest.model_validate_json(await request.body())
        except ValidationError as error:
            raise UploadError(_validation_message(error)) from error
        return body, decode_base64(body.image), None
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=64) as form:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise UploadError("no image: send the picture as a file in the form field 'image'")
            fields = {name: form.getlist(name) for name in ("classes", "caption", "phrases", "threshold", "adapter")}
            values = {"classes": fields["classes"] or None, "phrases": fields["phrases"] or None,
                      **{name: fields[name][-1] for name in ("caption", "threshold", "adapter") if fields[name]}}
            try:
                options = DetectOptions.model_validate(values)
            except ValidationError as error:
                raise UploadError(_validation_message(error)) from error
            return options, await upload.read(), upload.filename
    raise UploadError(f"unsupported content type '{content_type or 'none'}': send multipart/form-data with an "
                      "'image' file, or application/json with base64 'image'", status_code=415)


def create_app(predictor: GLIPPredictor, config: ServeConfig | None = None, weights: str | None = None) -> FastAPI:
    """The server application around ``predictor`` (see the module docstring).

    Args:
        predictor: the model, with any adapters already added.
        config: batching, queue, timeout and size limits.
        weights: where the model came from, reported by ``GET /v1/models``.
    """
    config = config or ServeConfig()
    batcher = Batcher(make_run_batch(predictor), config.max_batch, config.batch_window_ms / 1000, config.queue_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="GLIP", version=__version__, lifespan=lifespan,
                  description="Zero-shot detection and phrase grounding: upload an image, name what to find.")
    app.state.batcher = batcher
    app.state.config = config
    app.add_middleware(BodySizeLimit, max_bytes=config.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/healthz", summary="liveness, queue and batching counters")
    async def healthz() -> dict:
        return {"status": "ok", "waiting": batcher.waiting, "stats": batcher.stats.to_dict()}

    @app.get("/v1/models", summary="the base model and the loaded adapters")
    async def models() -> dict:
        model_config = predictor.model.config
        return {
            "model": {"name": model_config.name, "weights": weights, "device": str(predictor.device),
                      "input_min_size": model_config.input.min_size, "max_text_tokens": predictor.max_length},
            "adapters": [{"name": a.name, "mode": a.mode, "categories": a.category_names,
                          "num_parameters": a.num_parameters()} for a in predictor.adapters.values()],
            "limits": {"max_batch": config.max_batch, "max_upload_bytes": config.max_upload_bytes,
                       "max_pixels": config.max_pixels, "request_timeout_s": config.request_timeout_s},
        }

    @app.post("/v1/detect", summary="detect classes or caption phrases in one image", response_model=DetectResponse,
              responses=_ERRORS, openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": MULTIPART_SCHEMA},
                  "application/json": {"schema": DetectJSONRequest.model_json_schema()}}}})
    async def detect(request: Request):
        try:
            options, data, filename = await _read_request(request, config)
            key = detect_key(options)
            if key.adapter is not None and key.adapter not in predictor.adapters:
                known = ", ".join(sorted(predictor.adapters)) or "none loaded"
                return _error(404, f"unknown adapter '{key.adapter}' (adapters: {known}): see GET /v1/models")
            image = await run_in_threadpool(decode_upload, data, config.max_pixels, filename or "image")
        except UploadError as error:
            return _error(error.status_code, str(error))
        except PromptError as error:
            return _error(422, str(error))
        try:
            result = await batcher.submit(key, image, config.request_timeout_s)
        except QueueFullError as error:
            return _error(503, f"server busy: {error}; retry after {config.retry_after_s} s",
                          headers={"Retry-After": str(config.retry_after_s)})
        except TimeoutError:
            return _error(504, f"no answer within {config.request_timeout_s:g} s: the server is overloaded or the "
                               "image too large; retry later")
        except ValueError as error:  # prompt or adapter refused by the predictor
            return _error(422, str(error))
        except Exception:  # noqa: BLE001 - logged here, a one-line answer to the client
            logger.exception("detection failed")
            return _error(500, "internal error while detecting; the server log has the details")
        return {**result, "image": filename}

    return app

