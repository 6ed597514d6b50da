"""The runner's thread pool for sync handlers (plain ``def`` tasks).

A thread cannot be cancelled: when the attempt is cancelled (its timeout, a revoked
lease, shutdown) the awaiting task ends, and the attempt is failed or given up as for an
``async def`` handler, but the thread runs on and keeps its pool thread until the
function returns. Until then its job counts as abandoned (``running_jobs``): shutdown
does not put it back, since it may still have effects; its lease runs out and the
reclaimer decides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from typing import Any

from .._sync import handler_loop


def default_threads() -> int:
    """Python's own default for I/O-bound pools (``ThreadPoolExecutor``)."""
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadPool:
    """A bounded pool, started at the first sync handler."""

    def __init__(self, size: int | None) -> None:
        self.size = size or default_threads()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[concurrent.futures.Future[Any], str] = {}
        self._lock = threading.Lock()  # _running shrinks in the pool's threads

    def running_jobs(self) -> set[str]:
        """Jobs whose function still runs in a thread (its attempt may have ended)."""
        with self._lock:
            return set(self._running.values())

    async def call(
        self, job_id: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``fn(*args, **kwargs)`` in a pool thread, in a copy of this task's context
        (``current_job()`` works there), with the runner's loop as ``handler_loop``."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.size, thread_name_prefix="aqueue-handler"
            )
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(handler_loop.set, loop)
        cf = self._pool.submit(context.run, functools.partial(fn, *args, **kwargs))
        with self._lock:
            self._running[cf] = job_id
        cf.add_done_callback(self._running_done)
        return await asyncio.wrap_future(cf, loop=loop)

    def _running_done(self, cf: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._running.pop(cf, None)

    def close(self) -> None:
        """Stop taking work; threads still running finish in the background."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
