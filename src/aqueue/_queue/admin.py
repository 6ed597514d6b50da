"""Operators' reads and bulk actions of a queue: jobs found by a filter in pages, the
backlog's age, and retry / cancel / delete of many jobs at once, by id or by filter. A
mixin of the client (see ``aqueue._queue``), over :class:`JobControl`.

A bulk action by filter walks the matching jobs page by page (newest first, by id), and
acts on each page with one statement: it never loads every id at once, and a job that
changes meanwhile is judged by the action's own compare-and-set (a running job is never
retried or deleted; a finished one is never cancelled).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime

from .._errors import BrokerError, ConfigurationError
from .._models import JobRecord, JobStatus, validate_tags
from .._serde import encode_reason
from .._store.values import JobQuery
from .exec import Exec

PAGE = 500
"""Jobs per statement of a bulk action."""
SCAN = 50_000
"""Jobs a search that no index serves reads per page at most (:meth:`Admin.search_jobs`)."""
COUNT_CAP = 100_000
"""Jobs of one status counted one by one at most (:meth:`Admin.status_counts`)."""

Moment = datetime | float | int
"""A point in time: an aware ``datetime`` or UNIX seconds."""


def _us(t: Moment | None, what: str) -> int | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ConfigurationError(f"{what} must be timezone-aware, got {t!r}")
        return int(t.timestamp() * 1_000_000)
    return int(float(t) * 1_000_000)


def _statuses(status: str | JobStatus | Iterable[str | JobStatus] | None) -> tuple[JobStatus, ...]:
    if status is None:
        return ()
    if isinstance(status, str | JobStatus):
        status = [status]
    try:
        return tuple(JobStatus(s) for s in status)
    except ValueError as exc:
        known = ", ".join(s.value for s in JobStatus)
        raise ConfigurationError(f"unknown job status ({exc}): use one of {known}") from exc


class Admin(Exec):
    """Finds jobs and acts on many at once."""

    def job_query(
        self,
        *,
        status: str | JobStatus | Iterable[str | JobStatus] | None = None,
        task: str | None = None,
        job_id: str | None = None,
        text: str | None = None,
        created_from: Moment | None = None,
        created_to: Moment | None = None,
        before_id: str | None = None,
        tag: str | None = None,
    ) -> JobQuery:
        """The filter of :meth:`find_jobs` and the bulk actions, checked. ``tag``: the
        jobs enqueued with this tag (``options(tags=[...])``), found through the tags
        table's index."""
        if tag is not None:
            validate_tags([tag])
        return JobQuery(
            self.name,
            _statuses(status),
            task or None,
            job_id or None,
            text or None,
            _us(created_from, "created_from"),
            _us(created_to, "created_to"),
            before_id or None,
            tag,
        )

    async def jobs(
        self,
        *,
        tag: str | None = None,
        status: str | JobStatus | Iterable[str | JobStatus] | None = None,
        task: str | None = None,
        limit: int = 50,
    ) -> list[JobRecord]:
        """Up to ``limit`` jobs of this queue with this tag, status(es) and task, newest
        first: ``await queue.jobs(tag="customer:42", status="failed")``. Shorthand for
        :meth:`find_jobs` over :meth:`job_query` (which pages and filters further)."""
        return await self.find_jobs(self.job_query(tag=tag, status=status, task=task), limit)

    async def find_jobs(self, query: JobQuery | None = None, limit: int = 50) -> list[JobRecord]:
        """Up to ``limit`` jobs of this queue matching ``query`` (see :meth:`job_query`),
        newest first. The next page: the same query with ``before_id`` set to the last
        id of this one."""
        if limit < 1:
            raise ConfigurationError(f"limit must be >= 1, got {limit}")
        be = await self._backend()
        return await be.store.find_jobs(query or JobQuery(self.name), limit)

    async def search_jobs(
        self, query: JobQuery, limit: int = 50, *, scan: int = SCAN
    ) -> tuple[list[JobRecord], str | None]:
        """:meth:`find_jobs` that stays fast on millions of rows: a filter on the task,
        the text or the creation time (no index serves them) reads only the newest
        ``scan`` jobs below ``before_id``, in primary key order. Returns the jobs found
        and, when the page is not full but older jobs were not read, the id to continue
        below (``before_id`` of the next page; ``None``: the search reached the end)."""
        if limit < 1 or scan < 1:
            raise ConfigurationError(f"limit and scan must be >= 1, got {limit}, {scan}")
        be = await self._backend()
        bounded = (
            query.task is not None
            or query.text is not None
            or query.created_from is not None
            or query.created_to is not None
        ) and query.job_id is None
        floor = await be.store.scan_floor(query.queue, query.before_id, scan) if bounded else None
        if floor is not None:
            query = dataclasses.replace(query, from_id=floor)
        jobs = await be.store.find_jobs(query, limit)
        return jobs, (floor if floor is not None and len(jobs) < limit else None)

    async def status_counts(self, cap: int = COUNT_CAP) -> dict[JobStatus, tuple[int, bool]]:
        """Per status: how many jobs and whether the figure is exact. Past ``cap`` jobs
        in one status, the database's estimate (MySQL/MariaDB and PostgreSQL; SQLite
        counts them all): an overview page stays fast with millions of finished jobs."""
        be = await self._backend()
        return await be.store.count_by_status_bounded(self.name, cap)

    async def backlog_age(self) -> float | None:
        """Seconds the longest-waiting due job has waited (``None``: nothing waits)."""
        be = await self._backend()
        now = self._clock()
        oldest = await be.store.oldest_due(self.name, now)
        return None if oldest is None else max(0.0, (now - oldest) / 1e6)

    async def _targets(
        self, ids: Sequence[str] | None, query: JobQuery | None, limit: int | None
    ) -> AsyncIterator[list[str]]:
        """The ids a bulk action names, a page at a time: ``ids``, or the jobs matching
        ``query`` (at most ``limit``)."""
        if (ids is None) == (query is None):
            raise ConfigurationError("give either job ids or a query")
        if ids is not None:
            for i in range(0, len(ids), PAGE):
                yield list(ids[i : i + PAGE])
            return
        assert query is not None
        if query.queue != self.name:
            raise ConfigurationError(f"the query is of queue {query.queue!r}, not {self.name!r}")
        be = await self._backend()
        left = limit
        while left is None or left > 0:
            size = PAGE if left is None else min(PAGE, left)
            page = await be.store.find_jobs(query, size)
            if not page:
                return
            yield [r.id for r in page]
            if left is not None:
                left -= len(page)
            if len(page) < size:
                return
            query = dataclasses.replace(query, before_id=page[-1].id)

    async def retry_jobs(
        self,
        ids: Sequence[str] | None = None,
        *,
        query: JobQuery | None = None,
        limit: int | None = None,
    ) -> int:
        """Put jobs back to ``todo`` with fresh attempts and into Redis (as
        :meth:`repush`, never a running job): those of ``ids``, or up to ``limit`` of
        those matching ``query``. Returns how many."""
        be = await self._backend()
        total = 0
        async for page in self._targets(ids, query, limit):
            now = self._clock()
            records = await be.store.repush_jobs(self.name, page, now)
            if not records:
                continue
            epoch = await be.dispatcher.rows(records, now)
            if epoch is not None:
                for rec in records:
                    be.marker.add([rec.id], rec.updated_at, epoch)
            total += len(records)
        return total

    async def cancel_jobs(
        self,
        ids: Sequence[str] | None = None,
        *,
        query: JobQuery | None = None,
        limit: int | None = None,
        reason: str = "cancelled",
    ) -> int:
        """:meth:`cancel` of each job of ``ids``, or of up to ``limit`` jobs matching
        ``query`` (those not finished). Returns how many were cancelled."""
        be = await self._backend()
        total = 0
        encoded = encode_reason("Cancelled", reason)
        async for page in self._targets(ids, query, limit):
            done = await be.store.cancel_jobs(self.name, page, encoded, self._clock())
            if done:
                with contextlib.suppress(BrokerError):
                    await be.broker.notify_finished(sorted(done))
            total += len(done)
        return total

    async def delete_jobs(
        self,
        ids: Sequence[str] | None = None,
        *,
        query: JobQuery | None = None,
        limit: int | None = None,
    ) -> int:
        """Delete the jobs of ``ids``, or up to ``limit`` jobs matching ``query``, with
        their results; a running job is kept (cancel it first). Returns how many.

        A job deleted before it ran is cancelled first, so that nothing waits for it
        forever: the jobs waiting on it are cancelled with it (or released, if they run
        after a failure), as when it is cancelled, and whoever awaits its result is
        told."""
        be = await self._backend()
        total = 0
        encoded = encode_reason("Cancelled", "deleted")
        async for page in self._targets(ids, query, limit):
            ended = await be.store.cancel_jobs(self.name, page, encoded, self._clock())
            total += await be.store.delete_jobs(self.name, page)
            if ended:
                with contextlib.suppress(BrokerError):
                    await be.broker.notify_finished(sorted(ended))
        return total
