"""What the runner reads of a queue: its name, tasks, schedules, hooks and middleware,
and its backend. ``_runner`` types against :class:`Registry` instead of importing the
``Queue`` class, so the runner and the producer side (``_queue``) never import each
other; ``aqueue.Queue`` (in ``_app``, above both) is a Registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._context import JobContext
from ._cron import Schedule
from ._models import JobStatus
from ._task import QueueHandle, Task

Hook = Callable[[dict[str, Any]], Awaitable[None]]
JobHook = Callable[[JobContext], Awaitable[None]]
AfterHook = Callable[[JobContext, JobStatus, BaseException | None], Awaitable[None]]
CallNext = Callable[[], Awaitable[Any]]
Middleware = Callable[[JobContext, CallNext], Awaitable[Any]]


class Registry(QueueHandle, Protocol):
    """The registrations of a queue (no I/O of their own) and its client operations."""

    tasks: dict[str, Task[Any, Any]]
    schedules: dict[str, Schedule]
    startup_hooks: list[Hook]
    shutdown_hooks: list[Hook]
    before_hooks: list[JobHook]
    after_hooks: list[AfterHook]
    middlewares: list[Middleware]
