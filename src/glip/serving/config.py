"""Settings of the HTTP server: batching, queueing, timeouts and request limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeConfig:
    """How ``glip serve`` batches work and what it refuses.

    Attributes:
        max_batch: most images in one forward pass. Requests with the same prompt, adapter and
            threshold that wait together share a pass; 1 turns batching off.
        batch_window_ms: how long the first waiting request waits for others to join its batch.
            A few milliseconds cost little next to a forward pass and let bursts share one.
        queue_size: most requests waiting for the model (not yet running). Beyond it the server
            answers 503 with ``Retry-After`` instead of letting latency grow without bound.
        request_timeout_s: a request still unanswered after this long gets 504 (and its image is
            skipped if it has not started running).
        max_upload_bytes: largest request body; larger ones get 413 before they are read whole.
        max_pixels: largest image (width x height, read from the file header before decoding);
            larger ones get 413. 25 MP covers any camera photo the model would shrink anyway.
        retry_after_s: the ``Retry-After`` value sent with 503.
    """

    max_batch: int = 8
    batch_window_ms: float = 5.0
    queue_size: int = 64
    request_timeout_s: float = 60.0
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 25_000_000
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"ServeConfig.max_batch must be at least 1 (1 = no batching), got {self.max_batch}")
        if self.batch_window_ms < 0:
            raise ValueError(f"ServeConfig.batch_window_ms must be >= 0, got {self.batch_window_ms}")
        if self.queue_size < 1:
            raise ValueError(f"ServeConfig.queue_size must be at least 1, got {self.queue_size}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"ServeConfig.request_timeout_s must be positive, got {self.request_timeout_s}")
        if self.max_upload_bytes < 1:
            raise ValueError(f"ServeConfig.max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_pixels < 1:
            raise ValueError(f"ServeConfig.max_pixels must be positive, got {self.max_pixels}")
        if self.retry_after_s < 0:
            raise ValueError(f"ServeConfig.retry_after_s must be >= 0, got {self.retry_after_s}")
