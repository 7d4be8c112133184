"""Giving memory back to the operating system once a burst of requests is over.

glibc's allocator keeps freed memory in its heaps (one per thread that allocated) for reuse, so the
resident size of a server that once decoded forty photos at the same time stays at its peak long
after they are gone. `release_memory` asks glibc to hand free pages back (``malloc_trim(0)``), and
`IdleMemoryRelease` calls it shortly after the server falls idle: nothing in flight, nothing queued
or running. Elsewhere (macOS, Windows, musl) it does nothing.

Example:
    >>> release_memory() in (True, False)
    True
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import platform
import sys
from collections.abc import Callable
from functools import lru_cache

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_memory() -> bool:
    """Return free heap memory to the OS (glibc ``malloc_trim(0)``); False where not available."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class IdleMemoryRelease:
    """Count requests in flight; ``delay_s`` after the count drops to zero, while ``busy()`` (the
    model's queue) is False too, run `release_memory` on a worker thread.

    Use on the event loop: ``enter()`` when a request starts, ``leave()`` when it is answered.
    """

    def __init__(self, busy: Callable[[], bool], delay_s: float = 0.5) -> None:
        self.busy = busy
        self.delay_s = delay_s
        self.in_flight = 0
        self.releases = 0  # how often memory was given back (reported by /healthz)
        self._timer: asyncio.TimerHandle | None = None

    def enter(self) -> None:
        self.in_flight += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.in_flight:
            return  # enter() came first; the next leave() schedules again
        if self.busy():
            self._schedule()  # a stopped or timed-out call is still finishing: look again later
            return
        asyncio.get_running_loop().run_in_executor(None, self._release)

    def _release(self) -> None:
        if release_memory():
            self.releases += 1
            logger.debug("idle: returned free memory to the OS")
