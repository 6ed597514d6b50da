"""Job control and operators' reads of the in-memory store (a part of ``MemoryStore``):
repush, cancel, purges, and the filters, pages and bulk actions, with the SQL store's
semantics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .._models import JobRecord, JobStatus
from .._store.values import JobQuery
from ._rows import Row, Table


def _matches(r: Row, q: JobQuery) -> bool:
    return (
        r.queue == q.queue
        and (not q.statuses or r.status in q.statuses)
        and (q.task is None or r.task == q.task)
        and (q.job_id is None or r.id == q.job_id)
        and (q.created_from is None or r.created_at >= q.created_from)
        and (q.created_to is None or r.created_at < q.created_to)
        and (not q.text or q.text in r.payload or q.text in (r.error or ""))
        and (q.before_id is None or r.id < q.before_id)
        and (q.from_id is None or r.id >= q.from_id)
        and (q.tag is None or q.tag in (r.tags or "").split(","))
    )


class JobControl:
    """Needs the store's rows (``_table``) and its one-step yield (``_step``)."""

    _table: Table

    async def _step(self) -> None:
        raise NotImplementedError

    async def set_progress(
        self, job_id: str, token: str, progress: float, message: str | None
    ) -> bool:
        await self._step()
        r = self._table.held(job_id, token)
        if r is None:
            return False
        r.progress, r.progress_message = float(progress), message
        return True

    async def repush(self, job_id: str, now: int, *, force: bool) -> JobRecord | None:
        await self._step()
        r = self._table.rows.get(job_id)
        if r is None:
            return None
        if r.status is JobStatus.RUNNING:
            if not force:
                return r.record()
            r.run_at = r.leased_until if r.leased_until is not None else now
        else:
            r.run_at = now
        r.status, r.attempts, r.stalls = JobStatus.TODO, 0, 0
        r.leave_running()
        r.dispatched_at = r.finished_at = None
        r.result = r.error = None
        r.updated_at = now
        return r.record()

    async def cancel(self, job_id: str, reason: str, now: int) -> bool:
        await self._step()
        r = self._table.rows.get(job_id)
        if r is None or r.status not in (JobStatus.WAITING, JobStatus.TODO, JobStatus.RUNNING):
            return False
        r.status, r.error, r.finished_at = JobStatus.CANCELLED, reason, now
        r.run_at, r.updated_at = min(r.run_at, now), now
        r.lease_token, r.leased_until, r.unique_key = None, None, None
        return True

    async def purge_finished(self, queue: str, before: int, limit: int = 5000) -> int:
        await self._step()
        gone = [
            r.id
            for r in self._table.of(queue)
            if r.status.is_final
            and r.run_at < before
            and r.finished_at is not None
            and r.finished_at < before
        ]
        return self._table.delete(gone)

    async def purge_queue(self, queue: str) -> int:
        await self._step()
        gone = [r.id for r in self._table.of(queue)]
        return self._table.delete(gone)

    # -- operators' reads and bulk actions ---------------------------------------------

    async def find_jobs(self, query: JobQuery, limit: int) -> list[JobRecord]:
        await self._step()
        rows = sorted(
            (r for r in self._table.rows.values() if _matches(r, query)), key=lambda r: r.id
        )
        return [r.record() for r in reversed(rows[-limit:])] if limit > 0 else []

    async def scan_floor(self, queue: str, before_id: str | None, rows: int) -> str | None:
        await self._step()
        ids = sorted(
            (r.id for r in self._table.of(queue) if before_id is None or r.id < before_id),
            reverse=True,
        )
        return ids[rows - 1] if rows > 0 and len(ids) >= rows else None

    async def count_by_status_bounded(
        self, queue: str, cap: int
    ) -> dict[JobStatus, tuple[int, bool]]:
        await self._step()
        counts = Counter(r.status for r in self._table.of(queue))
        return {s: (counts[s], True) for s in JobStatus}

    async def oldest_due(self, queue: str, now: int) -> int | None:
        await self._step()
        due = [
            r.run_at
            for r in self._table.of(queue)
            if r.status is JobStatus.TODO and r.run_at <= now
        ]
        return min(due, default=None)

    async def finished_counts(
        self, queue: str, since: int, bucket: int, due_after: int
    ) -> list[tuple[int, JobStatus, int]]:
        await self._step()
        counts: Counter[tuple[int, JobStatus]] = Counter(
            (r.finished_at - r.finished_at % bucket, r.status)
            for r in self._table.of(queue)
            if r.finished_at is not None and r.finished_at >= since and r.run_at >= due_after
        )
        return [(t, st, n) for (t, st), n in counts.items()]

    def _of(self, queue: str, ids: Sequence[str]) -> list[str]:
        rows = self._table.rows
        return sorted(i for i in set(ids) if i in rows and rows[i].queue == queue)

    async def repush_jobs(self, queue: str, ids: Sequence[str], now: int) -> list[JobRecord]:
        out = []
        for job_id in self._of(queue, ids):
            rec = await self.repush(job_id, now, force=False)
            if rec is not None and rec.status is JobStatus.TODO and rec.updated_at == now:
                out.append(rec)
        return out

    async def cancel_jobs(self, queue: str, ids: Sequence[str], reason: str, now: int) -> set[str]:
        return {i for i in self._of(queue, ids) if await self.cancel(i, reason, now)}

    async def delete_jobs(self, queue: str, ids: Sequence[str]) -> int:
        await self._step()
        rows = self._table.rows
        gone = [i for i in self._of(queue, ids) if rows[i].status is not JobStatus.RUNNING]
        return self._table.delete(gone)
