"""The batcher alone: grouping by key, batch size caps, isolation of failures, queue bound, timeouts,
and cancellation of work nobody waits for."""

from __future__ import annotations

import asyncio
import threading

import pytest

from glip.serving.batcher import Batcher, QueueFullError


class Recorder:
    """A fake model call that records (key, items) and answers ``key:item`` per item."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[tuple[str, list]] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, key, items, cancelled):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if "bad" in items:
            raise ValueError("bad item")
        self.calls.append((key, list(items)))
        return [f"{key}:{item}" for item in items]


def run(coroutine_function, *args):
    return asyncio.run(coroutine_function(*args))


async def _submit_all(batcher: Batcher, jobs: list[tuple[str, object]], timeout_s: float = 5.0):
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(k, i, timeout_s) for k, i in jobs), return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_requests_share_one_call():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=8, window_s=0.05)
    results = run(_submit_all, batcher, [("a", i) for i in range(5)])
    assert results == [f"a:{i}" for i in range(5)]
    assert recorder.calls == [("a", [0, 1, 2, 3, 4])]
    assert batcher.stats.batch_sizes == {5: 1} and batcher.stats.requests == 5


def test_keys_are_never_mixed_and_results_go_to_their_own_request():
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=8, window_s=0.05)
    jobs = [("a", 0), ("b", 1), ("a", 2), ("b", 3), ("c", 4)]
    results = run(_submit_all, batcher, jobs)
    assert results == [f"{k}:{i}" for k, i in jobs]
    assert sorted(recorder.calls) == [("a", [0, 2]), ("b", [1, 3]), ("c", [4])]


def test_max_batch_caps_each_call():
    recorder = Recorder()
    run(_submit_all, Batcher(recorder, max_batch=4, window_s=0.05), [("a", i) for i in range(10)])
    assert [len(items) for _, items in recorder.calls] == [4, 4, 2]
    recorder = Recorder()
    run(_submit_all, Batcher(recorder, max_batch=1, window_s=0.05), [("a", i) for i in range(3)])
    assert [len(items) for _, items in recorder.calls] == [1, 1, 1]


def test_a_bad_item_fails_only_its_own_request():
    recorder = Recorder()
    results = run(_submit_all, Batcher(recorder, max_batch=8, window_s=0.05), [("a", 0), ("a", "bad"), ("a", 2)])
    assert results[0] == "a:0" and results[2] == "a:2"
    assert isinstance(results[1], ValueError) and "bad item" in str(results[1])


def test_queue_full_is_refused():
    gate = threading.Event()
    recorder = Recorder(gate)

    async def scenario():
        batcher = Batcher(recorder, max_batch=1, window_s=0.0, queue_size=2)
        await batcher.start()
        running = asyncio.ensure_future(batcher.submit("a", 0, 5))
        while not recorder.entered.is_set():  # item 0 is on the worker thread: no longer waiting
            await asyncio.sleep(0.005)
        queued = [asyncio.ensure_future(batcher.submit("a", i, 5)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError, match="queue size 2"):
            await batcher.submit("a", 3, 5)
        gate.set()
        results = await asyncio.gather(running, *queued)
        await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(scenario())
    assert results == ["a:0", "a:1", "a:2"] and stats.rejected == 1


def test_timeout_gives_up_and_skips_the_item():
    gate = threading.Event()
    recorder = Recorder(gate)

    async def scenario():
        batcher = Batcher(recorder, max_batch=1, window_s=0.0)
        await batcher.start()
        blocker = asyncio.ensure_future(batcher.submit("a", 0, 5))
        while not recorder.entered.is_set():
            await asyncio.sleep(0.005)
        with pytest.raises(TimeoutError, match="no answer within 0.05 s"):
            await batcher.submit("a", 1, 0.05)  # waits behind the blocked item 0
        gate.set()
        await blocker
        await asyncio.sleep(0.05)
        await batcher.stop()
        return batcher.stats

    stats = asyncio.run(scenario())
    assert [items for _, items in recorder.calls] == [[0]]  # item 1 was never run
    assert stats.timed_out == 1


class Stoppable:
    """A fake model call that runs until ``cancelled()`` (then raises, as the predictor does) or until
    ``finish`` is set; ``saw_cancel`` tells whether it saw the cancellation."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.finish = threading.Event()
        self.saw_cancel = threading.Event()

    def __call__(self, key, items, cancelled):
        self.entered.set()
        while not self.finish.wait(0.01):
            if cancelled():
                self.saw_cancel.set()
                raise RuntimeError("detection cancelled")
        return [f"{key}:{item}" for item in items]


def test_a_running_call_whose_requests_all_timed_out_is_stopped():
    model = Stoppable()

    async def scenario():
        batcher = Batcher(model, max_batch=1, window_s=0.0)
        await batcher.start()
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await batcher.submit("slow", 0, 0.1)
        for _ in range(200):  # the worker notices within one poll
            if batcher.idle:
                break
            await asyncio.sleep(0.01)
        model.finish.set()  # from now on calls return at once
        after = await batcher.submit("good", 1, 5)
        elapsed = asyncio.get_running_loop().time() - started
        await batcher.stop()
        return after, elapsed, batcher.stats

    after, elapsed, stats = asyncio.run(scenario())
    assert model.saw_cancel.is_set() and after == "good:1" and elapsed < 2.0
    assert (stats.timed_out, stats.stopped, stats.errors, stats.dropped) == (1, 1, 0, 0)


def test_a_call_keeps_running_while_one_of_its_requests_still_waits():
    model = Stoppable()

    async def scenario():
        batcher = Batcher(model, max_batch=2, window_s=0.05)
        await batcher.start()
        patient = asyncio.ensure_future(batcher.submit("k", 0, 5))
        with pytest.raises(TimeoutError):
            await batcher.submit("k", 1, 0.2)  # same batch as item 0
        await asyncio.sleep(0.1)
        model.finish.set()
        result = await patient
        await batcher.stop()
        return result, batcher.stats

    result, stats = asyncio.run(scenario())
    assert result == "k:0" and not model.saw_cancel.is_set()
    assert stats.batch_sizes == {2: 1} and stats.stopped == 0 and stats.timed_out == 1


def test_a_caller_that_goes_away_is_dropped_from_the_queue_or_stopped():
    model = Stoppable()

    async def scenario():
        batcher = Batcher(model, max_batch=1, window_s=0.0)
        await batcher.start()
        running = asyncio.ensure_future(batcher.submit("a", 0, 5))
        while not model.entered.is_set():
            await asyncio.sleep(0.005)
        queued = asyncio.ensure_future(batcher.submit("a", 1, 5))
        await asyncio.sleep(0.02)
        queued.cancel()  # what the app does when the client disconnects
        running.cancel()
        await asyncio.gather(running, queued, return_exceptions=True)
        for _ in range(200):
            if batcher.idle:
                break
            await asyncio.sleep(0.01)
        idle = batcher.idle
        await batcher.stop()
        return idle, batcher.stats

    idle, stats = asyncio.run(scenario())
    assert idle and model.saw_cancel.is_set()
    assert (stats.abandoned, stats.stopped, stats.dropped, stats.batches) == (2, 1, 1, 1)
