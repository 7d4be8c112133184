"""Settings of the HTTP server: batching, queueing, timeouts and request limits."""

from __future__ import annotations

from dataclasses import dataclass

from glip.images import DEFAULT_MAX_MEGAPIXELS


@dataclass
class ServeConfig:
    """How ``glip serve`` batches work and what it refuses.

    Every limit bounds the work one request can cause and is checked before the model runs
    (see `glip.serving.limits`); ``GET /v1/models`` reports them.

    Attributes:
        max_batch: most images in one forward pass. Requests with the same prompt, adapter and
            threshold that wait together share a pass; 1 turns batching off.
        batch_window_ms: how long the first waiting request waits for others to join its batch.
            A few milliseconds cost little next to a forward pass and let bursts share one.
        queue_size: most requests waiting for the model (not yet running). Beyond it the server
            answers 503 with ``Retry-After`` instead of letting latency grow without bound.
        request_timeout_s: a request still unanswered after this long gets 504; its work is
            dropped from the queue, or stopped between prompt chunks if it is running.
        max_upload_bytes: largest request body; larger ones get 413 before they are read whole.
        max_pixels: largest image (width x height, read from the file header before decoding);
            larger ones get 413. The default, `glip.images.DEFAULT_MAX_MEGAPIXELS`, is the CLI's too.
        max_decodes: images decoded at the same time. A decoded photo briefly holds its full
            resolution (a 24 MP PNG is 72 MB of RGB) before it is shrunk to the model's input, so
            this, not the number of clients, bounds the memory that uploads take.
        max_classes: most class names in one request, checked before anything is tokenised.
        max_prompt_chars: most characters of prompt text in one request (the class names
            together, or the caption and its phrases), checked before anything is tokenised.
        max_prompt_chunks: most prompt chunks (model passes of the text side and head) per image.
            Each chunk costs one text and head pass: 0.3 s on one CPU thread for glip-nano at 320 px,
            so the default of 16 bounds one image at about 5 s there. 16 chunks hold about 400
            COCO-length names on glip-nano's 64-token window and 1,600 on GLIP-T's 256 tokens (where
            ``max_classes`` binds first).
        retry_after_s: the ``Retry-After`` value sent with 503.
    """

    max_batch: int = 8
    batch_window_ms: float = 5.0
    queue_size: int = 64
    request_timeout_s: float = 60.0
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = int(DEFAULT_MAX_MEGAPIXELS * 1_000_000)
    max_decodes: int = 2
    max_classes: int = 1000
    max_prompt_chars: int = 20_000
    max_prompt_chunks: int = 16
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"ServeConfig.max_batch must be at least 1 (1 = no batching), got {self.max_batch}")
        if self.batch_window_ms < 0:
            raise ValueError(f"ServeConfig.batch_window_ms must be >= 0, got {self.batch_window_ms}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"ServeConfig.request_timeout_s must be positive, got {self.request_timeout_s}")
        if self.retry_after_s < 0:
            raise ValueError(f"ServeConfig.retry_after_s must be >= 0, got {self.retry_after_s}")
        for name in ("queue_size", "max_upload_bytes", "max_pixels", "max_decodes", "max_classes",
                     "max_prompt_chars", "max_prompt_chunks"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServeConfig.{name} must be at least 1, got {getattr(self, name)}")

    def limits(self) -> dict:
        """The limits as reported by ``GET /v1/models``."""
        return {"max_batch": self.max_batch, "queue_size": self.queue_size,
                "request_timeout_s": self.request_timeout_s, "max_upload_bytes": self.max_upload_bytes,
                "max_pixels": self.max_pixels, "max_decodes": self.max_decodes, "max_classes": self.max_classes,
                "max_prompt_chars": self.max_prompt_chars, "max_prompt_chunks": self.max_prompt_chunks}
