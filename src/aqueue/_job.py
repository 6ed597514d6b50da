"""A handle on one job: its status and its result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Protocol

from ._backend import Backend
from ._errors import JobFailedError, JobNotFoundError, ResultTimeoutError
from ._models import JobRecord, JobStatus
from ._serde import decode_error
from ._store.caller import connection_of, get_job_on, sql_store
from ._sync import run_sync


class JobOwner(Protocol):
    """What a :class:`Job` uses of the queue it belongs to (a ``Queue`` is one)."""

    name: str

    async def _backend(self) -> Backend: ...

    async def cancel(
        self, job_id: str, reason: str = "cancelled", *, connection: Any = None
    ) -> bool: ...


class Job:
    """A job handle: ``job.id``, ``await job.status()``, ``await job.result(timeout=...)``."""

    __slots__ = ("id", "queue")

    def __init__(self, queue: JobOwner, job_id: str) -> None:
        self.queue = queue
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id} queue={self.queue.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other.queue is self.queue

    def __hash__(self) -> int:
        return hash(self.id)

    async def info(self, *, connection: Any = None) -> JobRecord:
        """The job's whole row (status, attempts, result, error, times); with
        ``connection`` (the application's SQLAlchemy connection or session), as its
        transaction sees it."""
        backend = await self.queue._backend()
        if connection is not None:
            store = sql_store(backend.store)
            conn = await connection_of(store, connection)
            rec = await get_job_on(store, conn, self.id)
        else:
            rec = await backend.store.get_job(self.id)
        if rec is None:
            raise JobNotFoundError(self.id, f"no job {self.id}")
        return rec

    async def cancel(self, reason: str = "cancelled", *, connection: Any = None) -> bool:
        """See :meth:`Queue.cancel`."""
        if connection is None:
            return await self.queue.cancel(self.id, reason)
        return await self.queue.cancel(self.id, reason, connection=connection)

    async def status(self, *, connection: Any = None) -> JobStatus:
        """The job's status now (one read of its row; ``connection`` as for :meth:`info`)."""
        return (await self.info(connection=connection)).status

    async def result(self, timeout: float | None = None, *, poll: float = 1.0) -> Any:
        """Wait for the job to finish and return the handler's return value.

        Woken by the runners' finish notifications (Redis pub/sub); SQL is read once per
        wake-up and every ``poll`` seconds besides. Raises :class:`JobFailedError` (with
        the failure's type, message and traceback) when it failed or was cancelled, and
        :class:`ResultTimeoutError` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        be = await self.queue._backend()
        ev = be.listener.watch(self.id)
        try:
            return await self._wait(ev, deadline, timeout, poll)
        finally:
            be.listener.unwatch(self.id, ev)

    def result_sync(self, timeout: float | None = None, *, poll: float = 1.0) -> Any:
        """:meth:`result` from code without a running event loop (blocks this thread)."""
        return run_sync(lambda: self.result(timeout, poll=poll))

    def info_sync(self) -> JobRecord:
        """:meth:`info` from code without a running event loop."""
        return run_sync(self.info)

    async def _wait(
        self, ev: asyncio.Event, deadline: float | None, timeout: float | None, poll: float
    ) -> Any:
        while True:
            ev.clear()
            rec = await self.info()
            if rec.status is JobStatus.DONE:
                return json.loads(rec.result) if rec.result is not None else None
            if rec.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                etype, emsg, tb = decode_error(rec.error)
                raise JobFailedError(self.id, rec.status.value, etype, emsg, tb)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResultTimeoutError(
                        self.id, f"job {self.id} still {rec.status.value} after {timeout}s"
                    )
                wait = min(poll, left)
            else:
                wait = poll
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await ev.wait()
