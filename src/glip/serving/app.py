"""The HTTP API and web page: ``create_app(predictor, config)`` returns a FastAPI application.

Endpoints:
    ``POST /v1/detect``: one image (multipart file or base64 in JSON) and a prompt -> the
        predictor's detection JSON (`ImageDetections.to_dict`), boxes in the upload's pixels; with
        ``masks=true`` each detection's instance mask as COCO RLE of the upload's size.
    ``POST /v1/caption``: one image -> its caption from the model's caption head
        (`ImageCaption.to_dict`); ``grounded=true`` boxes the caption's noun phrases too. It shares
        the queue, batching (by beam, grounded, threshold) and time limit of detection.
    ``POST /v1/vqa``: one image and questions about it -> each question's best answers (a model
        with a VQA head; `glip.serving.vqa`).
    ``GET /v1/models``: the base model (and whether it has a mask head, a caption head or a VQA
        head), the loaded adapters and the server's limits.
    ``GET /healthz``: liveness plus request outcomes, queue and batching counters.
    ``GET /``: the web page (``static/``); ``/docs``: the OpenAPI documentation.

What one request may cost is bounded before the model runs: its body and pixels (`uploads`) and
its prompt (`limits`: classes, characters, caption tokens, prompt chunks). Images are decoded on a
pool of ``max_decodes`` threads and shrunk at once to the model's input size, so memory does not
grow with the number of clients. The model runs on one worker thread fed by a `Batcher`, which
groups concurrent requests with the same prompt, adapter, threshold, ``all_names`` and ``masks``. A request
that times out or whose client goes away is dropped from the queue, or stopped between prompt
chunks if running; free memory goes back to the OS when the server falls idle (`memory`).

Example:
    >>> import uvicorn  # doctest: +SKIP
    >>> app = create_app(GLIPPredictor.from_pretrained(None), ServeConfig(max_batch=8))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from glip import __version__
from glip.predictor import GLIPPredictor
from glip.serving.batcher import Batcher, QueueFullError
from glip.serving.config import ServeConfig
from glip.serving.limits import RequestTooLarge, check_prompt
from glip.serving.memory import IdleMemoryRelease
from glip.serving.schemas import (CaptionJSONRequest, CaptionKey, CaptionOptions, CaptionResponse, DetectJSONRequest,
                                  DetectKey, DetectOptions, DetectResponse, ErrorResponse, PromptError, caption_key,
                                  detect_key, request_schema)
from glip.serving.uploads import BodySizeLimit, DecodedImage, UploadError, decode_upload, form_fields, read_request
from glip.serving.vqa import (VqaKey, VqaResponse, answer_batch, check_vqa_request, read_vqa_request, vqa_key,
                              vqa_request_schema)

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in {
    400: "masks asked of a model without a mask head, a caption of a model without a caption head, or "
         "questions of a model without a VQA head",
    404: "unknown adapter",
    413: "too much: body, pixels, classes, prompt characters, caption tokens or prompt chunks over a limit",
    415: "neither JSON nor a multipart form",
    422: "malformed: not an image, an empty or ambiguous prompt, a field out of range",
    503: "queue full (see Retry-After)",
    504: "no answer in time (the request's work is dropped or stopped)"}.items()}
_DETECT_FORM = form_fields(("classes", "phrases", "caption", "threshold", "adapter", "all_names", "masks"),
                           repeated=("classes", "phrases"))
_CAPTION_FORM = form_fields(("beam", "grounded", "threshold"))
NO_CAPTION_HEAD_400 = ("this server's model has no caption head (GET /v1/models: model.caption_head is false): serve a "
                       "model trained with glip caption-train")
DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there
CLIENT_GONE = 499  # never reaches anyone: the outcome of a request whose client went away


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


@dataclass
class RequestCounts:
    """Outcomes of ``POST /v1/detect`` since start, by kind: a client's mistake is not a failure."""

    ok: int = 0  # 200
    client_errors: int = 0  # 4xx: a bad upload, prompt or field, a limit exceeded, an unknown adapter
    server_errors: int = 0  # 500: the model call failed
    busy: int = 0  # 503: queue full
    timed_out: int = 0  # 504
    disconnected: int = 0  # the client went away before its answer

    def count(self, status: int) -> None:
        if status == CLIENT_GONE:
            self.disconnected += 1
        elif status == 503:
            self.busy += 1
        elif status == 504:
            self.timed_out += 1
        elif status >= 500:
            self.server_errors += 1
        elif status >= 400:
            self.client_errors += 1
        else:
            self.ok += 1


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def make_run_batch(predictor: GLIPPredictor):
    """The model call of the batcher: one ``predictor.detect`` for a group of images sharing a key,
    stopped between prompt chunks once ``cancelled()``; boxes go back to original-image pixels."""

    def run_batch(key: DetectKey | CaptionKey | VqaKey, images: list[DecodedImage],
                  cancelled: Callable[[], bool]) -> list[dict]:
        if isinstance(key, VqaKey):  # POST /v1/vqa shares the model's one worker thread
            return answer_batch(predictor, key, images, cancelled)
        if isinstance(key, CaptionKey):
            captions = predictor.caption([image.pixels for image in images], beam=key.beam, grounded=key.grounded,
                                         threshold=key.threshold, batch_size=len(images))
            return [_caption_to_original(image, result.to_dict()) for image, result in zip(images, captions)]
        results = predictor.detect([image.pixels for image in images],
                                   classes=list(key.classes) if key.classes else None, caption=key.caption,
                                   phrases=list(key.phrases) if key.phrases else None, threshold=key.threshold,
                                   batch_size=len(images), adapter=key.adapter, all_names=key.all_names,
                                   cancelled=cancelled, masks=key.masks)
        return [image.to_original(result.to_dict()) for image, result in zip(images, results)]

    return run_batch


def _caption_to_original(image: DecodedImage, result: dict) -> dict:
    """A caption result on the shrunk picture with its phrase boxes in the upload's pixels."""
    width, height = image.original_size
    scale = (width / image.pixels.width, height / image.pixels.height) * 2
    phrases = [{**p, "bbox_xyxy": [round(v * s, 2) for v, s in zip(p["bbox_xyxy"], scale)]}
               if p["bbox_xyxy"] is not None else p for p in result["phrases"]]
    return {**result, "width": width, "height": height, "phrases": phrases}


async def _unless_client_gone(request: Request, work: Awaitable[Any]) -> Any:
    """The result of ``work``; if the client disconnects first, ``work`` is cancelled and `ClientGone`
    raised (checked every `DISCONNECT_POLL_S`: nothing else reads the connection meanwhile)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class DetectionService:
    """What the routes share: the predictor, the batcher, the decoding pool and the counters.

    `start` and `stop` belong in the application's lifespan (they need the running event loop).
    """

    def __init__(self, predictor: GLIPPredictor, config: ServeConfig) -> None:
        self.predictor = predictor
        self.config = config
        self.batcher = Batcher(make_run_batch(predictor), config.max_batch, config.batch_window_ms / 1000,
                               config.queue_size)
        self.memory = IdleMemoryRelease(busy=lambda: not self.batcher.idle)
        self.counts = RequestCounts()
        self._decoders: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._decoders = ThreadPoolExecutor(max_workers=self.config.max_decodes, thread_name_prefix="glip-decode")
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self._decoders.shutdown(wait=False, cancel_futures=True)
        self._decoders = None

    def health(self) -> dict:
        return {"status": "ok", "waiting": self.batcher.waiting, "running": self.batcher.running,
                "requests": asdict(self.counts), "stats": self.batcher.stats.to_dict(),
                "memory_releases": self.memory.releases}

    def models(self, weights: str | None) -> dict:
        model_config = self.predictor.model.config
        return {
            "model": {"name": model_config.name, "weights": weights, "device": str(self.predictor.device),
                      "input_min_size": model_config.input.min_size, "input_max_size": model_config.input.max_size,
                      "max_text_tokens": self.predictor.max_length,
                      "mask_head": self.predictor.model.mask_head is not None,
                      "caption_head": self.predictor.model.caption_head is not None,
                      "vqa_head": self.predictor.answerer is not None,
                      "vqa_answers": len(self.predictor.answerer.vocabulary) if self.predictor.answerer else 0},
            "adapters": [{"name": a.name, "mode": a.mode, "categories": a.category_names,
                          "num_parameters": a.num_parameters()} for a in self.predictor.adapters.values()],
            "limits": {**self.config.limits(), "max_caption_tokens": self.predictor.max_length},
        }

    async def detect(self, request: Request) -> JSONResponse:
        """Answer one ``POST /v1/detect`` and count its outcome."""
        return await self._counted(request, self._prepare)

    async def vqa(self, request: Request) -> JSONResponse:
        """Answer one ``POST /v1/vqa`` and count its outcome."""
        return await self._counted(request, self._prepare_vqa)

    async def _counted(self, request: Request, prepare) -> JSONResponse:
        self.memory.enter()
        try:
            response = await self._answer(request, prepare)
        finally:
            self.memory.leave()
        self.counts.count(response.status_code)
        return response

    async def caption(self, request: Request) -> JSONResponse:
        """Answer one ``POST /v1/caption`` and count its outcome."""
        return await self._counted(request, self._prepare_caption)

    async def _prepare_caption(self, request: Request) -> tuple[CaptionKey, DecodedImage, str | None]:
        options, data, filename = await read_request(request, CaptionJSONRequest, CaptionOptions,
                                                     _CAPTION_FORM)
        if self.predictor.model.caption_head is None:
            raise UploadError(NO_CAPTION_HEAD_400, status_code=400)
        return caption_key(options), await self._decode(data, filename), filename

    async def _decode(self, data: bytes, filename: str | None) -> DecodedImage:
        return await asyncio.get_running_loop().run_in_executor(
            self._decoders, decode_upload, data, self.config.max_pixels, filename or "image",
            self.predictor.model.config.input)

    async def _prepare(self, request: Request) -> tuple[DetectKey, DecodedImage, str | None]:
        """Read, check and decode a request: everything before the model (raises on refusal)."""
        options, data, filename = await read_request(request, DetectJSONRequest, DetectOptions, _DETECT_FORM)
        key = detect_key(options)
        if key.masks and self.predictor.model.mask_head is None:
            raise UploadError("masks=true needs a model trained with a mask head, and this server's model has none "
                              "(GET /v1/models: model.mask_head is false): leave out masks", status_code=400)
        if key.adapter is not None and key.adapter not in self.predictor.adapters:
            known = ", ".join(sorted(self.predictor.adapters)) or "none loaded"
            raise UploadError(f"unknown adapter '{key.adapter}' (adapters: {known}): see GET /v1/models",
                              status_code=404)
        await run_in_threadpool(check_prompt, key, self.predictor, self.config)
        return key, await self._decode(data, filename), filename  # only the shrunk picture waits

    async def _prepare_vqa(self, request: Request) -> tuple[VqaKey, DecodedImage, str | None]:
        """Read, check and decode a VQA request (raises on refusal)."""
        options, data, filename = await read_vqa_request(request)
        key = vqa_key(options)
        await run_in_threadpool(check_vqa_request, key, self.predictor, self.config)
        return key, await self._decode(data, filename), filename

    async def _answer(self, request: Request, prepare: Callable) -> JSONResponse:
        config = self.config
        try:
            key, image, filename = await prepare(request)
        except RequestTooLarge as error:
            return _error(413, str(error))
        except UploadError as error:
            return _error(error.status_code, str(error))
        except PromptError as error:
            return _error(422, str(error))
        try:
            result = await _unless_client_gone(request, self.batcher.submit(key, image, config.request_timeout_s))
        except ClientGone:
            return _error(CLIENT_GONE, "the client went away before its answer")
        except QueueFullError as error:
            return _error(503, f"server busy: {error}; retry after {config.retry_after_s} s",
                          headers={"Retry-After": str(config.retry_after_s)})
        except TimeoutError:
            return _error(504, f"no answer within {config.request_timeout_s:g} s, so the work was stopped: the "
                               "server is overloaded or the request too long; retry later or with fewer classes")
        except ValueError as error:  # prompt or adapter refused by the predictor
            return _error(422, str(error))
        except Exception:  # noqa: BLE001 - logged here, a one-line answer to the client
            logger.exception("detection failed")
            return _error(500, "internal error while detecting; the server log has the details")
        return JSONResponse({**result, "image": filename})


def create_app(predictor: GLIPPredictor, config: ServeConfig | None = None, weights: str | None = None) -> FastAPI:
    """The server application around ``predictor`` (see the module docstring).

    Args:
        predictor: the model, with any adapters already added.
        config: batching, queue, timeout and request limits.
        weights: where the model came from, reported by ``GET /v1/models``.
    """
    config = config or ServeConfig()
    service = DetectionService(predictor, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="GLIP", version=__version__, lifespan=lifespan,
                  description="Zero-shot detection and phrase grounding: upload an image, name what to find.")
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=config.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/healthz", summary="liveness, request outcomes, queue and batching counters")
    async def healthz() -> dict:
        return service.health()

    @app.get("/v1/models", summary="the base model, the loaded adapters and the server's limits")
    async def models() -> dict:
        return service.models(weights)

    schemas = {kind: {"schema": request_schema(config.max_classes, config.max_prompt_chars, multipart=multipart)}
               for kind, multipart in (("multipart/form-data", True), ("application/json", False))}

    @app.post("/v1/detect", summary="detect classes or caption phrases in one image", response_model=DetectResponse,
              responses=_ERRORS, openapi_extra={"requestBody": {"required": True, "content": schemas}})
    async def detect(request: Request) -> JSONResponse:
        return await service.detect(request)

    caption_schemas = {kind: {"schema": model.model_json_schema()} for kind, model in
                       (("multipart/form-data", CaptionOptions), ("application/json", CaptionJSONRequest))}

    @app.post("/v1/caption", summary="describe one image (grounded=true: box the caption's noun phrases)",
              response_model=CaptionResponse, responses=_ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": caption_schemas}})
    async def caption(request: Request) -> JSONResponse:
        return await service.caption(request)

    vqa_schemas = {kind: {"schema": vqa_request_schema(config.max_prompt_chunks, config.max_prompt_chars, multipart)}
                   for kind, multipart in (("multipart/form-data", True), ("application/json", False))}

    @app.post("/v1/vqa", summary="answer questions about one image (a model with a VQA head)",
              response_model=VqaResponse, responses=_ERRORS,
              openapi_extra={"requestBody": {"required": True, "content": vqa_schemas}})
    async def vqa(request: Request) -> JSONResponse:
        return await service.vqa(request)

    return app
