"""Marks jobs as dispatched after their messages reached Redis, lazily and in bulk.

The sweeper re-dispatches ``todo`` rows never marked dispatched (a producer that crashed
between its INSERT and its push) once a grace period has passed. Marking costs one UPDATE
per ``linger`` period however many jobs were enqueued, and nobody waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from .._errors import BackendError
from .._models import now_us
from .store import Store

log = logging.getLogger("aqueue.marker")


class DispatchMarker:
    def __init__(
        self, store: Store, epoch: Callable[[], Awaitable[str]], *, linger: float = 0.05
    ) -> None:
        self._store = store
        self._epoch = epoch
        self._linger = linger
        self._pending: list[str] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def add(self, ids: Iterable[str]) -> None:
        self._pending.extend(ids)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aqueue-dispatch-marker"
            )
        self._wakeup.set()

    async def _run(self) -> None:
        # Ends on its own when closed: a cancellation can be lost inside redis-py's calls
        # on Python 3.11 (asyncio.wait_for), so shutdown must not depend on one.
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._closed:
                await asyncio.sleep(self._linger)
            await self._flush()

    async def _flush(self) -> None:
        while self._pending:
            ids, self._pending = self._pending[:5000], self._pending[5000:]
            try:
                await self._store.mark_dispatched(ids, await self._epoch(), now_us())
            except BackendError as exc:  # the sweeper copes: it only re-dispatches once
                log.debug("could not mark %d job(s) dispatched: %s", len(ids), exc)

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=10)
            for t in pending:
                t.cancel()
            self._task = None
        await self._flush()
