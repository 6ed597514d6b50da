"""Reads too slow to repeat at every page view, kept a few seconds: counting the jobs
by status reads one index entry per job (0.75 s for a million rows on MariaDB here), so
every open dashboard polling it every few seconds would keep the database busy. A stale
value is served at once while one refresh runs in the background (never two at once,
however many viewers); only the very first read waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Cached(Generic[T]):
    def __init__(self, read: Callable[[], Awaitable[T]], max_age: float) -> None:
        self._read = read
        self.max_age = max_age
        self._value: T | None = None
        self._at = 0.0
        self._refresh: asyncio.Task[T] | None = None

    @property
    def age(self) -> float | None:
        """Seconds since the value served was read (``None``: never read)."""
        return None if self._value is None else time.monotonic() - self._at

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._at < self.max_age:
            return self._value
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._reread())
            # a failed background read is retried at the next view; its error is seen
            # by the view that waits for it, if any
            self._refresh.add_done_callback(_retrieve)
        if self._value is not None:
            return self._value  # stale now, fresh at the next view
        return await asyncio.shield(self._refresh)

    async def _reread(self) -> T:
        value = await self._read()
        self._value, self._at = value, time.monotonic()
        return value

    async def close(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh


def _retrieve(task: asyncio.Task[T]) -> None:
    if not task.cancelled():
        task.exception()
