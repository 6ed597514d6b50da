"""Group commit in the application: coalesce concurrent requests into one statement.

A request submitted while the batcher is idle is flushed at once (a lone job waits for
nobody), or, with a ``linger``, after that long, with the requests that came meanwhile;
requests that arrive while a flush is in flight are gathered and flushed together next.
Batches are capped in items and bytes.
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


class _Group(Generic[R]):
    """The requests of one ``submit_many``: one future for all of them instead of one
    each (and a gather over a thousand)."""

    __slots__ = ("done", "left", "results")

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop) -> None:
        self.results: list[R | BaseException | None] = [None] * n
        self.left = n
        self.done: asyncio.Future[None] = loop.create_future()

    def settle(self, i: int, result: R | BaseException) -> None:
        self.results[i] = result
        self.left -= 1
        if not self.left and not self.done.done():
            self.done.set_result(None)


# A request waiting in the batcher: (item, its caller's future or group, index in group).
_Entry = tuple[T, "asyncio.Future[R] | _Group[R]", int]


def _settle(entry: _Entry[T, R], result: R | BaseException) -> None:
    _, sink, i = entry
    if isinstance(sink, _Group):
        sink.settle(i, result)
    elif sink.done():
        pass  # its caller was cancelled
    elif isinstance(result, BaseException):
        sink.set_exception(result)
    else:
        sink.set_result(result)


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
        linger: float = 0.0,
    ) -> None:
        self.name = name
        self._linger = linger
        self._flush = flush
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._parallel = parallel
        self._pending: deque[_Entry[T, R]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._closing = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._live = 0  # workers not finished: restarted when none is left
        self._closed = False

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
        entry: _Entry[T, R] = (item, fut, 0)
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
        group: _Group[R] = _Group(len(items), asyncio.get_running_loop())
        self._pending.extend([(item, group, i) for i, item in enumerate(items)])
        if not items:
            return []
        assert self._wakeup is not None
        self._wakeup.set()
        # Once submitted, the items are stored even if this caller is cancelled.
        await asyncio.shield(group.done)
        return group.results  # type: ignore[return-value]  # every slot is settled

    def _take(self) -> list[_Entry[T, R]]:
        batch: list[_Entry[T, R]] = []
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
                if self._linger and not self._closed:
                    # Idle until now: under a trickle each request would be a statement
                    # and a commit of its own; let the next few share them (close()
                    # ends the wait).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._linger):
                            await self._closing.wait()
                continue
            batch = self._take()
            if self._pending:
                wakeup.set()  # let a parallel worker take the rest
            items = [b[0] for b in batch]
            try:
                results = await self._flush(items)
            except asyncio.CancelledError as exc:
                for entry in batch:
                    if isinstance(entry[1], _Group):
                        entry[1].settle(entry[2], exc)
                    else:
                        entry[1].cancel()
                raise
            except BaseException as exc:  # handed to every waiter of the batch
                results = [exc] * len(batch)
            for entry, res in zip(batch, results, strict=True):
                _settle(entry, res)

    async def close(self) -> None:
        """Flush what is pending, then stop the workers."""
        self._closed = True
        self._closing.set()
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
        for entry in self._pending:
            _settle(entry, RuntimeError(f"{self.name} batcher closed"))
        self._pending.clear()
