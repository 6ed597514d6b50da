"""The job context a handler can reach with :func:`current_job`."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import CommitError, NoCurrentJobError
from ._models import JobStatus
from ._progress import Progress
from ._sync import run_sync
from ._task import QueueHandle


@dataclass(slots=True)
class JobContext:
    """What a running handler knows about its job.

    ``attempt`` is 1 on the first run. ``lease_token`` is the fencing token of this run:
    handlers with side effects outside aqueue can use ``(job_id, attempt)`` or the token
    to make them idempotent.
    """

    job_id: str
    """The job's id."""
    task: str
    """The task's name."""
    attempt: int
    """This run's number, from 1."""
    max_attempts: int
    """Runs allowed in all (retries + 1): ``attempt == max_attempts`` is the last."""
    lease_token: str
    """The fencing token of this run: a commit or finish is accepted only with it."""
    runner_id: str
    """The id of the runner running the job."""
    queue: QueueHandle
    """The queue the job belongs to."""
    args: tuple[Any, ...]
    """The handler's positional arguments, as decoded from JSON."""
    kwargs: dict[str, Any]
    """The handler's keyword arguments, as decoded from JSON."""
    state: dict[str, Any] = field(default_factory=dict)
    """Shared with the runner's startup/shutdown hooks (e.g. a DB pool set at startup)."""
    auto_commit: bool = True
    """False for a task registered with ``auto_commit=False``: the handler commits."""
    committed: bool = False
    """Whether this run's outcome was committed by :meth:`commit`."""
    _committer: Committer | None = field(default=None, repr=False)
    _progress: Progress | None = field(default=None, repr=False)
    _claim_settled: Callable[[], Awaitable[object]] | None = field(default=None, repr=False)
    """Waits for this run's claim to be committed (a handler may start before)."""

    async def progress(self, value: float, message: str | None = None) -> None:
        """Report how far this job is, ``value`` from 0 to 1 and an optional ``message``
        (cut to 255 characters): readable as ``JobRecord.progress`` /
        ``progress_message`` through ``job.info()``. Throttled to one write per second
        per job: a value reported sooner is written at the next allowed moment, or when
        the attempt ends (the last one always is). Written only while this run holds the
        job's lease."""
        if self._progress is None:
            self._progress = Progress(self.job_id, self._write_progress)
        await self._progress.report(value, message)

    def progress_sync(self, value: float, message: str | None = None) -> None:
        """:meth:`progress` from a sync handler (its thread)."""
        run_sync(lambda: self.progress(value, message))

    async def _write_progress(self, value: float, message: str | None) -> bool:
        if self._claim_settled is not None:
            # Until the claim commits, the row is not ``running`` under this token as
            # another transaction sees it (PostgreSQL's UPDATE would match nothing).
            await self._claim_settled()
        be = await self.queue._backend()
        return await be.store.set_progress(self.job_id, self.lease_token, value, message)

    async def _end_progress(self) -> None:
        """The attempt ended: its last progress written before its outcome."""
        if self._progress is not None:
            await self._progress.close()

    async def commit(
        self,
        status: str | JobStatus,
        *,
        result: Any = None,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        """Record this job's outcome by hand (tasks declared ``auto_commit=False``):
        ``done`` with ``result``, ``failed`` with ``error``, or ``todo`` to run it again
        after ``delay`` seconds. Raises :class:`CommitError` in auto-commit tasks, on a
        second commit, and when the lease was lost (the token no longer matches: another
        runner owns the job)."""
        if self.auto_commit:
            raise CommitError(
                f"task {self.task!r} commits automatically (its return value or exception "
                "is the outcome); declare it with @queue.task(auto_commit=False) to commit "
                "by hand"
            )
        if self.committed:
            raise CommitError(f"job {self.job_id} is already committed")
        if self._committer is None:
            raise CommitError("this context cannot commit")
        await self._end_progress()
        await self._committer(self, JobStatus(status), result, error, delay)
        self.committed = True


Committer = Callable[[JobContext, JobStatus, Any, "str | None", "float | None"], Awaitable[None]]


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("aqueue_job")


def current_job() -> JobContext:
    """The context of the job this handler runs for; raises :class:`NoCurrentJobError`
    (an :class:`AqueueError` and a :class:`LookupError`) outside a running job."""
    try:
        return _current.get()
    except LookupError:
        raise NoCurrentJobError("current_job() called outside a running aqueue job") from None
