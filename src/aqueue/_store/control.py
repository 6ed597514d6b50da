"""The SQL store's reads, job control and schedules: single jobs and counts, repush,
cancel and purge, the operators' searches and bulk actions, and a schedule's first tick.
``Store`` inherits them; each is one named statement or a few, built by the dialect's
builders (``sql``) and run through the executor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._models import JobRecord, JobStatus
from . import deps, tags
from .executor import Executor
from .sql import Queries, record
from .sql.deps import DepsQueries
from .sql.tags import TagQueries
from .values import JobQuery


class JobControl:
    """The part of the SQL store that operators and producers use beside the runner."""

    db: Executor
    sql: Queries
    deps: DepsQueries
    tags: TagQueries

    async def _fetch(self, what: str, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return await self.db.run(what, lambda: self.db.fetch(sql, params))

    async def _execute(self, what: str, sql: str, params: Sequence[Any]) -> int:
        return await self.db.run(what, lambda: self.db.execute(sql, params))

    # -- reads ----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch("reading a job", *self.sql.get_job(job_id))
        return record(rows[0]) if rows else None

    async def count_by_status(self, queue: str) -> dict[JobStatus, int]:
        rows = await self._fetch("counting jobs", *self.sql.count_by_status(queue))
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in rows:
            counts[JobStatus(status)] = int(n)
        return counts

    async def ids_by_status(self, queue: str, status: JobStatus, limit: int) -> list[str]:
        rows = await self._fetch("listing jobs", *self.sql.ids_by_status(queue, status, limit))
        return [r[0] for r in rows]

    async def unfinished_count(self, queue: str, now: int) -> int:
        rows = await self._fetch("counting unfinished jobs", *self.sql.unfinished_count(queue, now))
        return int(rows[0][0])

    async def waiting_jobs(self, queue: str, cap: int) -> int:
        rows = await self._fetch("counting waiting jobs", *self.sql.waiting_jobs(queue, cap))
        return int(rows[0][0])

    # -- job control ----------------------------------------------------------------

    async def repush(self, job_id: str, now: int, *, force: bool) -> JobRecord | None:
        changed = await self._execute("repushing a job", *self.sql.repush(job_id, now))
        if not changed and force:
            stmt = self.sql.repush_running(job_id, now)
            await self._execute("repushing a running job", *stmt)
        return await self.get_job(job_id)

    async def cancel(self, job_id: str, reason: str, now: int) -> bool:
        stmt = self.sql.cancel(job_id, reason, now)
        return (
            await deps.settle_finals(self.db, self.deps, "cancelling a job", stmt, [job_id], now)
            > 0
        )

    async def purge_finished(self, queue: str, before: int, limit: int = 5000) -> int:
        total = 0
        while True:
            page = self.sql.finished_page(queue, before, limit)
            rows = await self._fetch("listing finished jobs", *page)
            if not rows:
                return total
            ids = sorted(r[0] for r in rows)
            tagged = await tags.tags_of(self.db, self.tags, ids)
            stmt = self.sql.delete_finished(ids)
            total += await self._execute("purging finished jobs", *stmt)
            await tags.forget(self.db, self.tags, queue, tagged)
            await self._execute("purging dependencies", *self.deps.forget(ids))
            if len(rows) < limit:
                return total

    async def purge_queue(self, queue: str) -> int:
        await self._execute("purging dependencies", *self.deps.forget_queue(queue))
        n = await self._execute("purging", *self.sql.purge_queue(queue))
        await tags.purge(self.db, self.tags, queue)
        return n

    # -- operators' reads and bulk actions ---------------------------------------------

    async def set_progress(
        self, job_id: str, token: str, progress: float, message: str | None
    ) -> bool:
        return await tags.set_progress(self.db, self.tags, job_id, token, progress, message)

    async def find_jobs(self, query: JobQuery, limit: int) -> list[JobRecord]:
        rows = await self._fetch("finding jobs", *self.sql.find_jobs(query, limit, self.tags.tags))
        return [record(r) for r in rows]

    async def scan_floor(self, queue: str, before_id: str | None, rows: int) -> str | None:
        found = await self._fetch("bounding a search", *self.sql.scan_floor(queue, before_id, rows))
        return str(found[0][0]) if found else None

    async def count_by_status_bounded(
        self, queue: str, cap: int
    ) -> dict[JobStatus, tuple[int, bool]]:
        rows = await self._fetch("counting jobs", *self.sql.count_capped(queue, cap))
        out = {s: (int(n), int(n) < cap) for s, n in zip(JobStatus, rows[0], strict=True)}
        for status, (_, exact) in list(out.items()):
            estimate = None if exact else self.sql.estimate(queue, status)
            if not exact and estimate is None:  # no estimate (SQLite): count them all
                return {s: (n, True) for s, n in (await self.count_by_status(queue)).items()}
            if estimate is not None:
                plan = await self._fetch("estimating a count", *estimate)
                n = self.sql.estimated(plan) or cap
                rows_stmt = self.sql.table_rows()
                if rows_stmt is not None:  # a range over half the table: the rest of it
                    found = await self._fetch("estimating a count", *rows_stmt)
                    total = int(found[0][0] or 0) if found else 0
                    if n >= total // 2 * 0.9:
                        others = sum(m for s, (m, _) in out.items() if s is not status)
                        n = max(n, total - others)
                out[status] = (max(cap, n), False)
        return out

    async def oldest_due(self, queue: str, now: int) -> int | None:
        rows = await self._fetch("reading the backlog", *self.sql.oldest_due(queue, now))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    async def finished_counts(
        self, queue: str, since: int, bucket: int, due_after: int
    ) -> list[tuple[int, JobStatus, int]]:
        stmt = self.sql.finished_counts(queue, since, bucket, due_after)
        rows = await self._fetch("counting finished jobs", *stmt)
        return [(int(t), JobStatus(st), int(n)) for t, st, n in rows]

    async def repush_jobs(self, queue: str, ids: Sequence[str], now: int) -> list[JobRecord]:
        if not ids:
            return []
        ids = sorted(set(ids))
        if not await self._execute("repushing jobs", *self.sql.repush_jobs(queue, ids, now)):
            return []
        return [record(r) for r in await self._fetch("reading", *self.sql.repushed(ids, now))]

    async def cancel_jobs(self, queue: str, ids: Sequence[str], reason: str, now: int) -> set[str]:
        if not ids:
            return set()
        ids = sorted(set(ids))
        stmt = self.sql.cancel_jobs(queue, ids, reason, now)
        count = await deps.settle_finals(self.db, self.deps, "cancelling jobs", stmt, ids, now)
        if count == len(ids):
            return set(ids)
        if not count:
            return set()
        return {r[0] for r in await self._fetch("reading", *self.sql.cancelled(ids, now))}

    async def delete_jobs(self, queue: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        ids = sorted(set(ids))
        tagged = await tags.tags_of(self.db, self.tags, ids)
        n = await self._execute("deleting jobs", *self.sql.delete_jobs(queue, ids))
        if tagged:  # the running ones are not deleted: their tags stay
            left = await self._fetch("reading jobs left", *self.tags.present(sorted(tagged)))
            await tags.forget(self.db, self.tags, queue, tagged, {str(r[0]) for r in left})
        return n

    # -- schedules ------------------------------------------------------------------

    async def first_seen(self, key: str, now: int) -> int:
        await self._execute("recording a schedule", *self.sql.record_first_seen(key, now))
        rows = await self._fetch("reading a schedule", *self.sql.first_seen(key))
        return int(rows[0][0]) if rows else now
