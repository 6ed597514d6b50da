"""The job context a handler can reach with :func:`current_job`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import AqueueError

if TYPE_CHECKING:
    from ._queue import Queue


@dataclass(slots=True)
class JobContext:
    """What a running handler knows about its job.

    ``attempt`` is 1 on the first run. ``lease_token`` is the fencing token of this run:
    handlers with side effects outside aqueue can use ``(job_id, attempt)`` or the token
    to make them idempotent.
    """

    job_id: str
    task: str
    attempt: int
    max_attempts: int
    lease_token: str
    runner_id: str
    queue: Queue
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    """Shared with the runner's startup/shutdown hooks (e.g. a DB pool set at startup)."""


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("aqueue_job")


def current_job() -> JobContext:
    """The context of the job this handler runs for; raises outside a handler."""
    try:
        return _current.get()
    except LookupError:
        raise AqueueError("current_job() called outside a running aqueue job") from None
