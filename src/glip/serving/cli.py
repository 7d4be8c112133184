"""``glip serve [--weights W] [--adapter A ...] [--host H] [--port P] [--max-batch N] ...``.

Starts the HTTP API and web page (`glip.serving.app`) with uvicorn. Errors are one line on stderr
and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys

from glip.cli_errors import run_command
from glip.serving.config import ServeConfig

_DEFAULTS = ServeConfig()


def build_parser(prog: str = "glip serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve detection over HTTP: POST /v1/detect, GET /v1/models, a web page at /, "
                               "API docs at /docs.",
        epilog="example: glip serve --port 8000 --max-batch 8, then open http://127.0.0.1:8000/")
    parser.add_argument("--weights", help="our .safetensors, an official .pth or an official file name "
                                          "(default: the embedded model)")
    parser.add_argument("--config", choices=["glip-t", "glip-t-a", "glip-l"], help="architecture of --weights")
    parser.add_argument("--adapter", action="append", default=[], metavar="FILE",
                        help="a tuned task (adapter.safetensors) on the same base model (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                                                             "machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--max-batch", type=int, default=_DEFAULTS.max_batch,
                        help=f"most images per forward pass (default {_DEFAULTS.max_batch}; 1 = no batching)")
    parser.add_argument("--batch-window-ms", type=float, default=_DEFAULTS.batch_window_ms,
                        help=f"how long a request waits for others to share its pass (default "
                             f"{_DEFAULTS.batch_window_ms:g})")
    parser.add_argument("--queue-size", type=int, default=_DEFAULTS.queue_size,
                        help=f"waiting requests before answering 503 (default {_DEFAULTS.queue_size})")
    parser.add_argument("--timeout", type=float, default=_DEFAULTS.request_timeout_s,
                        help=f"seconds before a request gets 504 (default {_DEFAULTS.request_timeout_s:g})")
    parser.add_argument("--max-upload-mb", type=float, default=_DEFAULTS.max_upload_bytes / 2**20,
                        help=f"largest request body in MiB (default {_DEFAULTS.max_upload_bytes / 2**20:g})")
    parser.add_argument("--max-megapixels", type=float, default=_DEFAULTS.max_pixels / 1e6,
                        help=f"largest image in megapixels (default {_DEFAULTS.max_pixels / 1e6:g})")
    parser.add_argument("--max-decodes", type=int, default=_DEFAULTS.max_decodes,
                        help=f"images decoded at the same time; bounds upload memory (default {_DEFAULTS.max_decodes})")
    parser.add_argument("--max-classes", type=int, default=_DEFAULTS.max_classes,
                        help=f"most class names per request (default {_DEFAULTS.max_classes})")
    parser.add_argument("--max-prompt-chars", type=int, default=_DEFAULTS.max_prompt_chars,
                        help=f"most prompt characters per request (default {_DEFAULTS.max_prompt_chars})")
    parser.add_argument("--max-prompt-chunks", type=int, default=_DEFAULTS.max_prompt_chunks,
                        help=f"most prompt chunks (one model pass each) per image (default "
                             f"{_DEFAULTS.max_prompt_chunks})")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def serve_config(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(max_batch=args.max_batch, batch_window_ms=args.batch_window_ms, queue_size=args.queue_size,
                       request_timeout_s=args.timeout, max_upload_bytes=int(args.max_upload_mb * 2**20),
                       max_pixels=int(args.max_megapixels * 1e6), max_decodes=args.max_decodes,
                       max_classes=args.max_classes, max_prompt_chars=args.max_prompt_chars,
                       max_prompt_chunks=args.max_prompt_chunks)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from glip.serving.app import create_app
    except ImportError as error:
        raise RuntimeError(f"glip serve needs FastAPI and uvicorn ({error}): pip install \"glip[serve]\"") from error
    from glip.predictor import GLIPPredictor

    config = serve_config(args)
    predictor = GLIPPredictor.from_pretrained(args.weights, device=args.device, config=args.config)
    for path in args.adapter:
        predictor.add_adapter(path)
    app = create_app(predictor, config, weights=args.weights or "embedded default")
    names = ", ".join(predictor.adapters) or "none"
    print(f"glip serve: {predictor.model.config.name} on {predictor.device}, adapters: {names}; "
          f"page http://{args.host}:{args.port}/  API docs http://{args.host}:{args.port}/docs", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.debug else "info")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("glip").setLevel(logging.DEBUG if args.debug else logging.INFO)
    return run_command(lambda: run(args), args.debug, "server stopped")


if __name__ == "__main__":
    sys.exit(main())
