"""Dynamic batching: concurrent requests that ask the same question share one forward pass.

Requests are queued on the event loop; a collector takes the first one, waits a few milliseconds
for others, groups what arrived by key (same prompt, adapter and threshold) and hands each group,
at most ``max_batch`` items, to the model on **one** worker thread, so the event loop stays free
to accept and decode requests while the model runs. Every request owns its future: a result only
ever reaches the request whose input produced it.

Work nobody waits for is not done: a request that timed out or whose caller went away (its
`submit` was cancelled) is dropped from the queue, and a running model call whose requests have
all gone is told so through its ``cancelled()`` argument, which the predictor polls between prompt
chunks and batches (``GLIPPredictor.detect(..., cancelled=...)``), so the worker is free again
within one chunk.

Example:
    >>> import asyncio
    >>> async def demo():
    ...     batcher = Batcher(lambda key, items, cancelled: [f"{key}:{x}" for x in items], max_batch=4,
    ...                       window_s=0.01)
    ...     await batcher.start()
    ...     results = await asyncio.gather(*(batcher.submit("k", i, timeout_s=5) for i in range(3)))
    ...     await batcher.stop()
    ...     return results, batcher.stats.batch_sizes
    >>> asyncio.run(demo())
    (['k:0', 'k:1', 'k:2'], {3: 1})
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# (key, inputs, cancelled) -> one output per input, in order. Runs on the worker thread; ``cancelled()``
# turns True once every request of the call has gone, and the call may then stop by raising.
RunBatch = Callable[[Hashable, list[Any], Callable[[], bool]], list[Any]]


class QueueFullError(RuntimeError):
    """The queue of waiting requests is full: the caller should answer 503 and ask to retry."""


@dataclass
class BatcherStats:
    """Counters since start (read on the event loop; written only there)."""

    requests: int = 0  # accepted into the queue
    rejected: int = 0  # refused because the queue was full
    timed_out: int = 0  # no answer within their timeout
    abandoned: int = 0  # their caller went away (cancelled `submit`) before an answer came
    dropped: int = 0  # timed out or abandoned while queued: never ran
    stopped: int = 0  # timed out or abandoned while running: the model call was stopped early
    errors: int = 0  # model calls that raised (each failing input is retried alone first)
    batches: int = 0  # model calls
    batch_sizes: dict[int, int] = field(default_factory=dict)  # images per call -> number of calls

    def to_dict(self) -> dict:
        return {"requests": self.requests, "rejected": self.rejected, "timed_out": self.timed_out,
                "abandoned": self.abandoned, "dropped": self.dropped, "stopped": self.stopped,
                "errors": self.errors, "batches": self.batches,
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}}


@dataclass
class _Job:
    key: Hashable
    item: Any
    future: asyncio.Future
    gone: threading.Event = field(default_factory=threading.Event)  # timed out or abandoned; read by the worker


class Batcher:
    """Queue, group and run requests; see the module docstring.

    Args:
        run_batch: the model call, ``(key, items, cancelled) -> outputs`` (one per item, same order).
        max_batch: most items per call.
        window_s: how long the first waiting item waits for company (0: take only what is queued).
        queue_size: most items waiting (not yet running); `submit` raises `QueueFullError` beyond.
    """

    def __init__(self, run_batch: RunBatch, max_batch: int = 8, window_s: float = 0.005,
                 queue_size: int = 64) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.window_s = window_s
        self.queue_size = queue_size
        self.stats = BatcherStats()
        self._waiting = 0  # submitted and not yet handed to the worker
        self._running = 0  # items of the model call in progress
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def waiting(self) -> int:
        """Requests queued and not yet running."""
        return self._waiting

    @property
    def running(self) -> int:
        """Items of the model call in progress."""
        return self._running

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return self._waiting == 0 and self._running == 0

    async def start(self) -> None:
        """Start the collector on the running event loop and the model's worker thread."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glip-model")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="glip-batcher")

    async def stop(self) -> None:
        """Stop collecting; requests still waiting are answered with an error."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down: retry on another instance"))
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._task = self._queue = self._executor = None
        self._waiting = 0

    async def submit(self, key: Hashable, item: Any, timeout_s: float) -> Any:
        """Queue ``item`` under ``key`` and wait for its own output.

        Raises:
            QueueFullError: ``queue_size`` requests are already waiting.
            TimeoutError: no answer within ``timeout_s``: the item is dropped if still queued, or
                its model call told to stop if every item of that call has gone.
            asyncio.CancelledError: the caller cancelled the wait (client gone): handled the same way.
            Exception: whatever the model call raised for this item.
        """
        if self._task is None:
            raise RuntimeError("Batcher.submit before Batcher.start: start it in the app's lifespan")
        if self._waiting >= self.queue_size:
            self.stats.rejected += 1
            raise QueueFullError(f"{self._waiting} requests are already waiting (queue size {self.queue_size})")
        job = _Job(key, item, asyncio.get_running_loop().create_future())
        self._waiting += 1
        self.stats.requests += 1
        self._queue.put_nowait(job)
        try:
            # wait_for cancels the job's future on timeout or cancellation: the collector then skips it.
            return await asyncio.wait_for(job.future, timeout_s)
        except asyncio.TimeoutError:
            job.gone.set()
            self.stats.timed_out += 1
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None
        except asyncio.CancelledError:
            job.gone.set()
            self.stats.abandoned += 1
            raise

    async def _collect(self) -> None:
        """Forever: gather one window's worth of jobs, then run them group by group."""
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            jobs = [first]
            deadline = loop.time() + self.window_s
            while sum(job.key == first.key for job in jobs) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            groups: dict[Hashable, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():  # in order of arrival of each key's first job
                for start in range(0, len(group), self.max_batch):
                    await self._run(key, group[start:start + self.max_batch])

    async def _run(self, key: Hashable, jobs: list[_Job]) -> None:
        """One model call for ``jobs`` on the worker thread; a failed batch is retried item by item
        so that one bad input fails only its own request."""
        self._waiting -= len(jobs)
        live = [job for job in jobs if not job.gone.is_set() and not job.future.done()]
        self.stats.dropped += len(jobs) - len(live)
        if not live:
            return

        def cancelled() -> bool:  # called on the worker thread
            return all(job.gone.is_set() for job in live)

        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._running = len(live)
        try:
            outputs = await loop.run_in_executor(self._executor, self.run_batch, key, [job.item for job in live],
                                                 cancelled)
            if len(outputs) != len(live):
                raise RuntimeError(f"the model call returned {len(outputs)} outputs for {len(live)} inputs")
        except Exception as error:  # noqa: BLE001 - every failure is handed to its request
            if cancelled():  # stopped because nobody waits for it: not a failure
                logger.info("stopped a model call of %d: every request of it timed out or went away", len(live))
                self.stats.stopped += len(live)
                return
            self.stats.errors += 1
            if len(live) > 1:
                logger.info("a batch of %d failed (%s); running its items one by one", len(live), error)
                for job in live:
                    await self._run_alone(key, job)
                return
            self._fail(live[0], error)
            return
        finally:
            self._running = 0
            self.stats.batches += 1
            self.stats.batch_sizes[len(live)] = self.stats.batch_sizes.get(len(live), 0) + 1
        logger.debug("batch of %d in %.3f s", len(live), time.perf_counter() - started)
        for job, output in zip(live, outputs):
            if not job.future.done():
                job.future.set_result(output)

    async def _run_alone(self, key: Hashable, job: _Job) -> None:
        self._waiting += 1  # _run counts it out again
        await self._run(key, [job])

    def _fail(self, job: _Job, error: Exception) -> None:
        if not job.future.done():
            job.future.set_exception(error)
