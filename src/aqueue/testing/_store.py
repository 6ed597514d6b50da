"""An in-memory job store: the ``JobStore`` interface over a dict of rows, with the SQL
store's compare-and-set semantics (tests/contract runs one suite over both).

Each operation runs without an ``await`` in between its read and its write, so it is
atomic as one SQL statement is; it yields to the event loop once first, as a statement
sent to a server does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from .._errors import StoreError
from .._ids import now_us
from .._models import IdRun, JobRecord, JobStatus, NewJob
from .._store.schema import SCHEMA_VERSION
from .._store.values import Claim, ClaimState, Commit, Edge, Finish, Reclaim, fences
from ._control import JobControl
from ._deps import Deps
from ._rows import Row, Table


class MemoryStore(JobControl):
    """Jobs in a dict, for tests: no durability, one process. ``clock``: the store's
    own clock (``server_time_us``), the real time by default."""

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self._clock = clock or now_us
        self._table: Table = Table()
        self._rows = self._table.rows
        self._deps = Deps(self._table)
        self._meta: dict[str, str] = {}
        self._schema: int | None = None
        self.closed = False

    @property
    def single_writer(self) -> bool:
        return False

    @property
    def shares_clock(self) -> bool:
        return True

    def jobs(self) -> list[JobRecord]:
        """Every job as it stands (in id order): for assertions in tests."""
        return [self._rows[k].record() for k in sorted(self._rows)]

    async def _step(self) -> None:
        if self.closed:
            raise StoreError("the memory store is closed")
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.closed = True

    # -- schema ---------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        await self._step()
        return self._schema

    async def init_schema(self) -> int:
        await self._step()
        self._schema = SCHEMA_VERSION
        return SCHEMA_VERSION

    async def upgrade_schema(self) -> tuple[int, int]:
        await self._step()
        before, self._schema = self._schema or 0, SCHEMA_VERSION
        return before, SCHEMA_VERSION

    async def drop_schema(self) -> None:
        await self._step()
        self._rows.clear()
        self._meta.clear()
        self._schema = None

    async def server_time_us(self) -> int:
        await self._step()
        return self._clock()

    # -- enqueue --------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: int) -> list[str | BaseException]:
        await self._step()
        out: list[str | BaseException] = []
        for j in jobs:
            if j.id in self._rows:
                # an explicit id stands for the job stored under it (stored and run once)
                if j.explicit_id or j.unique_key:
                    out.append(j.id)
                else:
                    out.append(StoreError(f"job {j.id} was not stored (conflict)"))
                continue
            if j.unique_key is not None:
                holder = self._table.unique_holder(j.queue, j.unique_key)
                if holder is not None:
                    out.append(holder)
                    continue
            self._rows[j.id] = Row.new(j, now)
            out.append(j.id)
        return out

    # -- claim / finish -------------------------------------------------------------

    async def claim(self, c: Claim, *, again: bool = False) -> set[str]:
        await self._step()
        return self._claim(c)

    def _claim(self, c: Claim) -> set[str]:
        won: set[str] = set()
        for job_id, (stalls, attempts) in fences(c.items).items():
            r = self._rows.get(job_id)
            if r is None:
                continue
            if r.lease_token == c.token and r.status is JobStatus.RUNNING:
                won.add(job_id)  # held under this token already (a claim taken again)
                continue
            if (
                r.status is not JobStatus.TODO
                or r.run_at > c.now
                or r.stalls != stalls
                or r.attempts != attempts
            ):
                continue
            r.status = JobStatus.RUNNING
            r.lease_owner, r.lease_token, r.leased_until = c.owner, c.token, c.leased_until
            r.attempts += 1
            r.updated_at = c.now
            if r.dispatched_at is None:
                r.dispatched_at = c.now
            won.add(job_id)
        return won

    async def claim_again(self, c: Claim) -> tuple[set[str], set[str]]:
        await self._step()
        held = {
            i
            for i, _, _ in c.items
            if (r := self._rows.get(i)) is not None
            and r.lease_token == c.token
            and r.status is JobStatus.RUNNING
        }
        rest = [item for item in c.items if item[0] not in held]
        retaken = self._claim(Claim(rest, c.owner, c.token, c.leased_until, c.now))
        return held, retaken

    async def claim_open(self, c: Claim) -> tuple[set[str], Commit | None]:
        return await self.claim(c), None  # nothing to hold open: durable at once

    async def claim_states(self, ids: Sequence[str]) -> dict[str, ClaimState]:
        await self._step()
        return {
            i: ClaimState(r.status, r.run_at, r.leased_until, r.stalls, r.attempts)
            for i in ids
            if (r := self._rows.get(i)) is not None
        }

    async def release_claims(self, items: Sequence[tuple[str, str]], now: int) -> int:
        await self._step()
        n = 0
        for job_id, token in items:
            if (r := self._table.held(job_id, token)) is not None:
                r.put_back(now)
                n += 1
        return n

    async def finish(self, items: Sequence[Finish], now: int) -> set[str]:
        return (await self.finish_release(items, now))[0]

    async def finish_release(
        self, items: Sequence[Finish], now: int
    ) -> tuple[set[str], list[JobRecord]]:
        await self._step()
        accepted: set[str] = set()
        for f in items:
            r = self._table.held(f.id, f.token)
            if r is None:
                continue
            r.status = f.status
            r.updated_at = now
            if f.status is JobStatus.DONE:
                r.result = f.result
            else:
                r.error = f.error
            if f.status is JobStatus.TODO:
                r.run_at = f.run_at or now
                r.leave_running()
                r.dispatched_at = None  # until the follow-up message is pushed and marked
            else:
                r.finished_at = now
                r.leased_until = None
                r.unique_key = None
            accepted.add(f.id)
        final = {f.id: f.status for f in items if f.id in accepted and f.status.is_final}
        return accepted, self._deps.release(final, now)

    async def insert_with_parents(
        self, jobs: Sequence[NewJob], edges: Sequence[Edge], now: int
    ) -> dict[str, JobStatus]:
        await self._step()
        return self._deps.insert(jobs, edges, now)

    async def cancel(self, job_id: str, reason: str, now: int) -> bool:
        if not await super().cancel(job_id, reason, now):
            return False
        self._deps.release({job_id: JobStatus.CANCELLED}, now)
        return True

    async def parent_results(self, child: str) -> list[tuple[str, JobStatus, str | None]]:
        await self._step()
        return self._deps.results(child)

    async def renew(self, items: Sequence[tuple[str, str]], leased_until: int) -> set[str]:
        await self._step()
        lost: set[str] = set()
        for job_id, token in items:
            r = self._table.held(job_id, token)
            if r is None:
                lost.add(job_id)
            else:
                r.leased_until = leased_until
        return lost

    async def release_owner(
        self, queue: str, owner: str, now: int, *, keep: Sequence[str] = ()
    ) -> int:
        await self._step()
        n = 0
        for r in self._rows.values():
            if (
                r.queue == queue
                and r.status is JobStatus.RUNNING
                and r.lease_owner == owner
                and r.id not in keep
            ):
                r.put_back(now)
                n += 1
        return n

    async def fail_unclaimed(self, job_id: str, error: str, now: int) -> bool:
        await self._step()
        r = self._rows.get(job_id)
        if r is None or r.status is not JobStatus.TODO:
            return False
        r.status, r.error, r.finished_at = JobStatus.FAILED, error, now
        r.run_at, r.updated_at, r.unique_key = min(r.run_at, now), now, None
        self._deps.release({job_id: JobStatus.FAILED}, now)
        return True

    # -- reads ----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        await self._step()
        r = self._rows.get(job_id)
        return None if r is None else r.record()

    async def count_by_status(self, queue: str) -> dict[JobStatus, int]:
        await self._step()
        counts = dict.fromkeys(JobStatus, 0)
        for r in self._table.of(queue):
            counts[r.status] += 1
        return counts

    async def ids_by_status(self, queue: str, status: JobStatus, limit: int) -> list[str]:
        await self._step()
        return [r.id for r in self._table.of(queue) if r.status is status][:limit]

    async def unfinished_count(self, queue: str, now: int) -> int:
        await self._step()
        return sum(
            1
            for r in self._table.of(queue)
            if r.status is JobStatus.RUNNING or (r.status is JobStatus.TODO and r.run_at <= now)
        )

    async def waiting_jobs(self, queue: str, cap: int) -> int:
        await self._step()
        return min(cap, sum(1 for r in self._table.of(queue) if r.status is JobStatus.TODO))

    # -- dispatch marks and recovery --------------------------------------------------

    async def dispatchable(
        self, queue: str, after_id: str, limit: int, now: int
    ) -> list[JobRecord]:
        await self._step()
        rows = [
            r.record()
            for r in self._table.of(queue)
            if r.id > after_id
            and (
                r.status is JobStatus.TODO
                or (r.status is JobStatus.RUNNING and r.lease_ended_before(now))
            )
        ]
        return rows[:limit]

    async def mark_dispatched(
        self,
        marks: Sequence[tuple[str, int]],
        epoch: str,
        now: int,
        runs: Sequence[tuple[IdRun, int]] = (),
        *,
        unmarked_only: bool = False,
    ) -> None:
        await self._step()
        chosen: list[Row] = []
        for job_id, written_at in marks:
            r = self._rows.get(job_id)
            if r is not None and r.updated_at == written_at:
                chosen.append(r)
        for run, written_at in runs:
            chosen.extend(
                r
                for r in self._rows.values()
                if run.first <= r.id <= run.last
                and r.created_at == run.created_at
                and r.updated_at == written_at
            )
        for r in chosen:
            if unmarked_only and r.dispatched_at is not None:
                continue
            r.dispatched_at, r.dispatch_epoch = now, epoch

    async def undispatched(
        self, queue: str, epoch: str, written_before: int, after_id: str, limit: int
    ) -> list[JobRecord]:
        await self._step()
        rows = [
            r.record()
            for r in self._table.of(queue)
            if r.status is JobStatus.TODO
            and r.id > after_id
            and (
                (r.dispatched_at is None and r.updated_at < written_before)
                or (r.dispatched_at is not None and r.dispatch_epoch != epoch)
            )
        ]
        return rows[:limit]

    async def expired_leases(self, queue: str, before: int, limit: int) -> list[JobRecord]:
        await self._step()
        rows = [
            r
            for r in self._table.of(queue)
            if r.status is JobStatus.RUNNING and r.lease_ended_before(before)
        ]
        rows.sort(key=lambda r: r.leased_until or 0)
        return [r.record() for r in rows[:limit]]

    async def reclaim(self, items: Sequence[Reclaim], before: int, now: int) -> set[str]:
        await self._step()
        done: set[str] = set()
        for it in items:
            r = self._table.held(it.id, it.token)
            if r is None or not r.lease_ended_before(before):
                continue
            r.status, r.updated_at = it.status, now
            r.stalls += 1
            r.leave_running()
            if it.status is JobStatus.TODO:
                r.attempts = max(r.attempts - 1, 0)
                r.dispatched_at = None  # until the suspect message is pushed
                r.run_at = now
            else:
                r.finished_at, r.unique_key, r.error = now, None, it.error
                self._deps.release({it.id: it.status}, now)
            done.add(it.id)
        return done

    async def owner_running(self, queue: str, owner: str) -> int:
        await self._step()
        running = (r for r in self._table.of(queue) if r.status is JobStatus.RUNNING)
        return sum(1 for r in running if r.lease_owner == owner)

    # -- schedules ------------------------------------------------------------------

    async def first_seen(self, key: str, now: int) -> int:
        await self._step()
        return int(self._meta.setdefault(key, str(now)))


__all__ = ["MemoryStore"]
