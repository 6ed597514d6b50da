"""The in-memory store's table: job rows (every column of the SQL table) in a dict, and
the lookups its operations share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from .._models import JobRecord, JobStatus, NewJob

_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(JobRecord))


@dataclass(slots=True)
class Row:
    id: str
    queue: str
    task: str
    payload: str
    status: JobStatus
    priority: int
    attempts: int
    stalls: int
    max_attempts: int
    run_at: int
    lease_owner: str | None
    lease_token: str | None
    leased_until: int | None
    result: str | None
    error: str | None
    unique_key: str | None
    created_at: int
    updated_at: int
    finished_at: int | None
    parents_left: int = 0
    progress: float | None = None
    progress_message: str | None = None
    tags: str | None = None
    dispatched_at: int | None = None
    dispatch_epoch: str | None = None

    @classmethod
    def new(cls, j: NewJob, now: int) -> Row:
        """A just inserted job: ``todo``, no attempt or stall, written at ``now``."""
        return cls(
            id=j.id,
            queue=j.queue,
            task=j.task,
            payload=j.payload,
            status=JobStatus.TODO,
            priority=j.priority,
            attempts=0,
            stalls=0,
            max_attempts=j.max_attempts,
            run_at=j.run_at,
            lease_owner=None,
            lease_token=None,
            leased_until=None,
            result=None,
            error=None,
            unique_key=j.unique_key,
            created_at=j.created_at,
            updated_at=now,
            finished_at=None,
            tags=",".join(j.tags) or None,
        )

    def record(self) -> JobRecord:
        return JobRecord(**{k: getattr(self, k) for k in _RECORD_FIELDS})

    def leave_running(self) -> None:
        """No lease any more: owner, token and end cleared."""
        self.lease_owner = self.lease_token = None
        self.leased_until = None

    def put_back(self, now: int) -> None:
        """``running`` -> ``todo`` with the attempt given back and no stall counted."""
        self.status = JobStatus.TODO
        self.attempts -= 1
        self.leave_running()
        self.updated_at = now

    def lease_ended_before(self, t: int) -> bool:
        return self.leased_until is not None and self.leased_until < t


class Table:
    """The rows by id, and the lookups the store's operations share."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        # Called with the ids of deleted rows (the dependencies forget their edges).
        self.on_delete: list[Callable[[list[str]], None]] = []

    def of(self, queue: str) -> list[Row]:
        """The rows of ``queue`` in id order."""
        return sorted((r for r in self.rows.values() if r.queue == queue), key=lambda r: r.id)

    def held(self, job_id: str, token: str) -> Row | None:
        """The row if it is ``running`` under ``token``."""
        r = self.rows.get(job_id)
        if r is None or r.status is not JobStatus.RUNNING or r.lease_token != token:
            return None
        return r

    def unique_holder(self, queue: str, key: str) -> str | None:
        """The job of ``queue`` holding the unique ``key``, if any."""
        for r in self.rows.values():
            if r.unique_key == key and r.queue == queue:
                return r.id
        return None

    def delete(self, ids: list[str]) -> int:
        for i in ids:
            del self.rows[i]
        for hook in self.on_delete:
            hook(ids)
        return len(ids)
