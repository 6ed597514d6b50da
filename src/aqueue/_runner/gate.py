"""A FIFO semaphore with O(1) acquire and release.

``asyncio.Semaphore.acquire`` on Python 3.11 scans its waiters on every call (``locked()``),
which costs O(n) per job once hundreds of claimed jobs wait for a handler slot (a runner at
concurrency 1,000 with prefetch): quadratic in the end. This one hands a released permit
straight to the oldest waiter.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType


class Gate:
    __slots__ = ("_free", "_waiters")

    def __init__(self, permits: int) -> None:
        self._free = permits
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # handed a permit just as it was cancelled: pass it on
            raise  # (a cancelled waiter left in the queue is skipped by _release)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
