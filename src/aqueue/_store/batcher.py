"""Group commit in the application: coalesce concurrent requests into one statement.

A request submitted while the batcher is idle is flushed at once (a lone job waits for
nobody); requests that arrive while a flush is in flight are gathered and flushed together
next. Batches are capped in items and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("aqueue.batcher")

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class Batcher(Generic[T, R]):
    def __init__(
        self,
        name: str,
        flush: Flush[T, R],
        *,
        max_items: int = 500,
        max_bytes: int = 4 * 1024 * 1024,
        size_of: Callable[[T], int] | None = None,
        parallel: int = 1,
    ) -> None:
        self.name = name
        self._flush = flush
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._parallel = parallel
        self._pending: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._live = 0  # workers not finished: restarted when none is left
        self._closed = False
        self.flushes = 0
        self.items = 0

    def _ensure_started(self) -> None:
        if self._live:
            return
        self._wakeup = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._workers = []
        for i in range(self._parallel):
            w = loop.create_task(self._work(), name=f"aqueue-{self.name}-{i}")
            w.add_done_callback(self._worker_done)
            self._workers.append(w)
        self._live = len(self._workers)

    def _worker_done(self, _: asyncio.Task[None]) -> None:
        self._live -= 1

    async def submit(self, item: T) -> R:
        if self._closed:
            raise RuntimeError(f"{self.name} batcher is closed")
        self._ensure_started()
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        entry = (item, fut)
        self._pending.append(entry)
        assert self._wakeup is not None
        self._wakeup.set()
        try:
            return await fut
        except asyncio.CancelledError:
            # Not taken into a batch yet: withdraw it, so a cancelled caller's request is
            # not executed behind its back. (Once taken, it completes; the caller is gone,
            # and its cancelled future is skipped when the results are handed out.)
            with contextlib.suppress(ValueError):
                self._pending.remove(entry)
            raise

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        if self._closed:
            raise RuntimeError(f"{self.name} batcher is closed")
        self._ensure_started()
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[R]] = []
        for item in items:
            fut: asyncio.Future[R] = loop.create_future()
            self._pending.append((item, fut))
            futs.append(fut)
        assert self._wakeup is not None
        self._wakeup.set()
        done = await asyncio.shield(asyncio.gather(*futs, return_exceptions=True))
        return list(done)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        size = 0
        while self._pending and len(batch) < self._max_items:
            if self._size_of is not None:
                s = self._size_of(self._pending[0][0])
                if batch and size + s > self._max_bytes:
                    break
                size += s
            batch.append(self._pending.popleft())
        return batch

    async def _work(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            if not self._pending:
                if self._closed:
                    return  # cooperative exit: do not depend on a cancellation arriving
                wakeup.clear()
                await wakeup.wait()
                continue
            batch = self._take()
            if self._pending:
                wakeup.set()  # let a parallel worker take the rest
            items = [b[0] for b in batch]
            try:
                results = await self._flush(items)
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.cancel()
                raise
            except BaseException as exc:  # handed to every waiter of the batch
                results = [exc] * len(batch)
            self.flushes += 1
            self.items += len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def close(self) -> None:
        """Flush what is pending, then stop the workers."""
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.set()
        workers = [w for w in self._workers if not w.done()]
        if workers:
            _, stuck = await asyncio.wait(workers, timeout=30)
            for w in stuck:
                log.error("%s batcher worker did not stop; cancelling it", self.name)
                w.cancel()
            if stuck:
                await asyncio.wait(stuck, timeout=5)
        self._workers = []
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(RuntimeError(f"{self.name} batcher closed"))
        self._pending.clear()
