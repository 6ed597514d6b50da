"""The client of a queue, :class:`QueueClient`: everything of :class:`aqueue.Queue`
but running it, which ``aqueue._app`` adds on top. :class:`BoundQueue` is the queue
with job options bound, as ``queue.options(...)`` returns it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._job import Job
from .._models import Options
from .._sync import run_sync
from .._task import Task
from .admin import Admin


class QueueClient(Admin):
    """Everything of :class:`aqueue.Queue` but running it: registration, configuration,
    the backend (connected at first use), enqueue, job control and admin reads."""

    def options(self, **options: Any) -> BoundQueue:
        """Job options (the fields of :class:`Options`) for the enqueues made through the
        result: ``await queue.options(delay=5).enqueue("task", *args, **kwargs)``."""
        return BoundQueue(self, Options.of(**options))

    def enqueue_sync(self, task: str | Task[Any, Any], /, *args: Any, **kwargs: Any) -> Job:
        """:meth:`enqueue` from code without a running event loop (a WSGI view, a script,
        a sync handler): thread-safe, fork-safe; see docs/job-control.md."""
        return run_sync(lambda: self.enqueue(task, *args, **kwargs))

    def enqueue_many_sync(
        self,
        calls: Iterable[tuple[str | Task[Any, Any], Sequence[Any], dict[str, Any]]],
        *,
        options: Options | None = None,
    ) -> list[Job]:
        """:meth:`enqueue_many` from code without a running event loop."""
        calls = list(calls)
        return run_sync(lambda: self.enqueue_many(calls, options=options))


class BoundQueue:
    """A queue with job options bound, as returned by ``queue.options(...)``: its
    ``enqueue`` and ``enqueue_many`` apply them to every job."""

    def __init__(self, queue: QueueClient, options: Options) -> None:
        self._queue = queue
        self._opts = options

    async def enqueue(self, task: str | Task[Any, Any], /, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``task`` (a task or its name) with these options; returns once the job
        is durable in SQL: ``await queue.options(delay=5).enqueue("send", 42)``."""
        return await self._queue._enqueue(task, args, kwargs, self._opts)

    async def enqueue_many(
        self, calls: Iterable[tuple[str | Task[Any, Any], Sequence[Any], dict[str, Any]]]
    ) -> list[Job]:
        """Enqueue many ``(task, args, kwargs)`` calls with these options, as
        :meth:`Queue.enqueue_many` does."""
        return await self._queue.enqueue_many(calls, options=self._opts)

    def enqueue_sync(self, task: str | Task[Any, Any], /, *args: Any, **kwargs: Any) -> Job:
        """:meth:`enqueue` from synchronous code (no running event loop in this thread)."""
        return run_sync(lambda: self._queue._enqueue(task, args, kwargs, self._opts))

    def enqueue_many_sync(
        self, calls: Iterable[tuple[str | Task[Any, Any], Sequence[Any], dict[str, Any]]]
    ) -> list[Job]:
        """:meth:`enqueue_many` from synchronous code."""
        calls = list(calls)
        return run_sync(lambda: self._queue.enqueue_many(calls, options=self._opts))
