"""The SQL job store: ``JobStore`` over MySQL/MariaDB (asyncmy), PostgreSQL (asyncpg) or
SQLite (aiosqlite).

Each operation takes its statements from the dialect's builders (``sql``) and runs them
through the executor (``executor``: held connections, retries, errors mapped to
``StoreError``); the contracts are in ``base.JobStore``. A batch of N jobs costs one
statement; a write that changed fewer rows than it named reads which ones it did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from .._errors import EnqueueOutcomeUnknownError, StoreError
from .._models import IdRun, JobRecord, JobStatus, NewJob, validate_identifier
from . import deps, tags
from .control import JobControl
from .errors import is_definite
from .executor import Executor, parse_url
from .sql import dialect, record
from .sql.deps import DepsQueries
from .sql.tags import TagQueries
from .tables import Tables
from .values import Claim, ClaimState, Commit, Edge, Finish, Reclaim

PRE_READ = 16
"""More single jobs than this in one dispatch mark are first looked up (see
:meth:`Store.mark_dispatched`)."""


class Store(JobControl):
    """Named SQL operations over an async engine: the SQL implementation of ``JobStore``.
    The reads, job control and schedules are in ``control.JobControl``."""

    def __init__(
        self,
        url: str,
        *,
        table: str = "aqueue_jobs",
        pool_size: int = 10,
        sqlite_synchronous: str = "FULL",
        lock_wait_timeout: int = 5,
    ) -> None:
        self.table_name = validate_identifier(table, "table name")
        self.url, backend = parse_url(url)
        self.is_sqlite = backend == "sqlite"
        # JobStore capabilities: SQLite writes one statement at a time, and its clock is
        # this machine's.
        self.single_writer = self.is_sqlite
        self.shares_clock = self.is_sqlite
        queries = dialect(backend)
        session = queries.session(
            sqlite_synchronous=sqlite_synchronous, lock_wait_timeout=int(lock_wait_timeout)
        )
        self.db = Executor(
            self.url,
            session,
            pool_size=pool_size,
            single_writer=self.is_sqlite,
            connect_args=queries.connect_args(lock_wait_timeout=int(lock_wait_timeout)),
        )
        self.tables = Tables(self.db, self.table_name)
        quote = self.db.engine.dialect.identifier_preparer.quote
        self.sql = queries(quote(self.table_name), quote(self.tables.meta.name))
        self.deps = DepsQueries(
            self.sql,
            quote(f"{self.table_name}_deps"),
            row_locks=not self.is_sqlite,
            lock_of=backend == "postgresql",
            returning=self.is_sqlite and sqlite3.sqlite_version_info >= (3, 35),
        )
        self.tags = TagQueries(self.sql, quote(f"{self.table_name}_tags"))

    @property
    def engine(self) -> AsyncEngine:
        return self.db.engine

    async def close(self) -> None:
        await self.db.close()

    # -- schema -------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        return await self.tables.version()

    async def init_schema(self) -> int:
        return await self.tables.init()

    async def upgrade_schema(self) -> tuple[int, int]:
        return await self.tables.upgrade()

    async def drop_schema(self) -> None:
        await self.tables.drop()

    async def server_time_us(self) -> int:
        sql, params = self.sql.server_time()
        rows = await self.db.run("reading the server time", lambda: self.db.fetch(sql, params))
        return int(rows[0][0])

    # -- enqueue ------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: int) -> list[str | BaseException]:
        """A batch that fails as a whole is split in halves so one bad row does not fail
        the other producers."""
        try:
            return await self._insert_batch(jobs, now)
        except EnqueueOutcomeUnknownError:
            raise
        except StoreError as exc:
            if len(jobs) == 1:
                return [exc]
            if not is_definite(exc.__cause__ or exc):
                raise
            mid = len(jobs) // 2
            left = await self.insert_jobs(jobs[:mid], now)
            right = await self.insert_jobs(jobs[mid:], now)
            return left + right

    async def _insert_batch(self, jobs: Sequence[NewJob], now: int) -> list[str | BaseException]:
        careful = any(j.explicit_id or j.unique_key for j in jobs)
        if any(j.tags for j in jobs):
            await tags.insert_tagged(self.db, self.tags, jobs, now, careful=careful)
        else:
            sql, params = self.sql.insert(jobs, now, careful=careful)
            await self.db.insert(sql, params, jobs[0].id, len(jobs))
        if not careful:
            return [j.id for j in jobs]
        return await self._resolve_conflicts(jobs)

    async def _resolve_conflicts(self, jobs: Sequence[NewJob]) -> list[str | BaseException]:
        rows = await self._fetch("reading inserted jobs", *self.sql.inserted([j.id for j in jobs]))
        present = {r[0]: (r[1], r[2]) for r in rows}
        out: list[str | BaseException] = []
        for j in jobs:
            if j.id in present:
                out.append(j.id)
                continue
            if j.unique_key:
                found = await self._fetch(
                    "reading a unique job", *self.sql.unique_holder(j.queue, j.unique_key)
                )
                if found:
                    out.append(str(found[0][0]))
                    continue
            out.append(StoreError(f"job {j.id} was not stored (conflict)"))
        return out

    async def insert_with_parents(
        self, jobs: Sequence[NewJob], edges: Sequence[Edge], now: int
    ) -> dict[str, JobStatus]:
        return await deps.insert_with_parents(self.db, self.deps, jobs, edges, now, self.tags)

    async def parent_results(self, child: str) -> list[tuple[str, JobStatus, str | None]]:
        return await deps.parent_results(self.db, self.deps, child)

    # -- claims -----------------------------------------------------------------------

    async def claim(self, c: Claim, *, again: bool = False) -> set[str]:
        if not c.items:
            return set()
        sql, params, ordered = self.sql.claim(c)
        count = await self.db.run("claiming jobs", lambda: self.db.execute(sql, params))
        if count == len(ordered):
            return set(ordered)
        if count == 0 and not again:
            return set()
        rows = await self._fetch("reading claimed jobs", *self.sql.won(ordered, c.token))
        return {r[0] for r in rows}

    async def claim_again(self, c: Claim) -> tuple[set[str], set[str]]:
        if not c.items:
            return set(), set()
        ids = sorted({i for i, _, _ in c.items})
        rows = await self._fetch("reading claimed jobs", *self.sql.running_under(ids, c.token))
        held = {r[0] for r in rows}
        rest = [item for item in c.items if item[0] not in held]
        if not rest:
            return held, set()
        retaken = await self.claim(Claim(rest, c.owner, c.token, c.leased_until, c.now), again=True)
        return held, retaken

    async def claim_open(self, c: Claim) -> tuple[set[str], Commit | None]:
        """On SQLite, whose writer lock would be held meanwhile, the claim is committed at
        once."""
        if not self.sql.holds_claims_open or not c.items:
            return await self.claim(c), None
        sql, params, ordered = self.sql.claim(c)
        return await self.db.run(
            "claiming jobs",
            lambda: self.db.update_open(
                sql, params, ordered, lambda: self.sql.won(ordered, c.token)
            ),
        )

    async def claim_states(self, ids: Sequence[str]) -> dict[str, ClaimState]:
        if not ids:
            return {}
        rows = await self._fetch("reading job states", *self.sql.claim_states(ids))
        return {
            r[0]: ClaimState(JobStatus(r[1]), int(r[2]), r[3], int(r[4]), int(r[5])) for r in rows
        }

    async def release_claims(self, items: Sequence[tuple[str, str]], now: int) -> int:
        if not items:
            return 0
        return await self._execute("releasing claims", *self.sql.release_claims(sorted(items), now))

    # -- finish / renew / release -------------------------------------------------------

    async def finish(self, items: Sequence[Finish], now: int) -> set[str]:
        return (await self.finish_release(items, now))[0]

    async def finish_release(
        self, items: Sequence[Finish], now: int
    ) -> tuple[set[str], list[JobRecord]]:
        accepted: set[str] = set()
        released: list[JobRecord] = []
        groups: dict[JobStatus, list[Finish]] = {}
        for f in items:
            groups.setdefault(f.status, []).append(f)
        for status, group in groups.items():
            accepted |= await self._finish_group(status, group, now, released)
        return accepted, released

    async def _finish_group(
        self, status: JobStatus, group: Sequence[Finish], now: int, released: list[JobRecord]
    ) -> set[str]:
        group = sorted(group, key=lambda f: f.id)
        hinted = [f for f in group if f.parent] if status is not JobStatus.TODO else []
        if hinted:
            # workflow steps with children: straight to the finish that releases them
            mine, before, children = await deps.finish_parents(
                self.db, self.deps, self.sql, status, hinted, now
            )
            released += children
            accepted = {f.id for f in hinted} if len(mine) == len(hinted) else mine | before
            rest = [f for f in group if not f.parent]
            if rest:
                accepted |= await self._finish_group(status, rest, now, released)
            return accepted
        sql, params = self.sql.finish(status, group, now)
        count = await self.db.run("recording finished jobs", lambda: self.db.execute(sql, params))
        ids = [f.id for f in group]
        if count == len(group):
            return set(ids)
        if status is not JobStatus.TODO:
            # The rest are parents of other jobs (their finish releases them), or late.
            mine, before, children = await deps.finish_parents(
                self.db, self.deps, self.sql, status, group, now, partly_finished=count > 0
            )
            released += children
            if count + len(mine) == len(group):
                return set(ids)
            return mine | before
        # Some were rejected (late finish after a lost lease): find out which. Rows this
        # statement changed carry its updated_at.
        rows = await self._fetch("reading finished jobs", *self.sql.finished(ids, status, now))
        return {r[0] for r in rows}

    async def renew(self, items: Sequence[tuple[str, str]], leased_until: int) -> set[str]:
        if not items:
            return set()
        items = sorted(items)
        sql, params = self.sql.renew(items, leased_until)
        count = await self.db.run("renewing leases", lambda: self.db.execute(sql, params))
        if count == len(items):
            return set()
        ids = [i for i, _ in items]
        rows = await self._fetch("reading renewed leases", *self.sql.lease_states(ids))
        have = {r[0]: (r[1], r[2]) for r in rows}
        return {i for i, tok in items if have.get(i) != (tok, "running")}

    async def release_owner(
        self, queue: str, owner: str, now: int, *, keep: Sequence[str] = ()
    ) -> int:
        """A runner serves one queue; naming it reads that queue's running jobs only."""
        return await self._execute(
            "releasing jobs", *self.sql.release_owner(queue, owner, now, keep)
        )

    async def fail_unclaimed(self, job_id: str, error: str, now: int) -> bool:
        stmt = self.sql.fail_unclaimed(job_id, error, now)
        return (
            await deps.settle_finals(self.db, self.deps, "failing a job", stmt, [job_id], now) > 0
        )

    # -- dispatch marks and recovery --------------------------------------------------

    async def dispatchable(
        self, queue: str, after_id: str, limit: int, now: int
    ) -> list[JobRecord]:
        stmt = self.sql.dispatchable(queue, after_id, limit, now)
        return [record(r) for r in await self._fetch("reading dispatchable jobs", *stmt)]

    async def mark_dispatched(
        self,
        marks: Sequence[tuple[str, int]],
        epoch: str,
        now: int,
        runs: Sequence[tuple[IdRun, int]] = (),
        *,
        unmarked_only: bool = False,
    ) -> None:
        """A row that already carries a mark, such as one a runner claimed meanwhile (a
        claim marks the row itself), is read, not written, with ``unmarked_only``.

        With ``unmarked_only``, many single jobs (written at as many times: a trickle of
        ``enqueue()`` calls) are first looked up by id alone, and only those still without
        a mark are named in the UPDATE: its condition per write time, an OR of hundreds of
        terms, costs MariaDB ~10 ms to evaluate for 500 jobs against ~3.5 ms for the
        lookup, and the jobs of a trickle are usually claimed (so marked) by then. A job
        left out was marked when it was read; a later write that cleared its mark also
        moved its ``updated_at``, so this mark would not have applied to it anyway."""
        if unmarked_only and len(marks) > PRE_READ:
            left = {
                r[0]
                for r in await self._fetch(
                    "reading dispatch marks", *self.sql.unmarked(sorted(i for i, _ in marks))
                )
            }
            marks = [m for m in marks if m[0] in left]
        if not marks and not runs:
            return
        sql, params = self.sql.mark_dispatched(marks, epoch, now, runs, unmarked_only)
        await self.db.run("marking jobs dispatched", lambda: self.db.execute(sql, params))

    async def undispatched(
        self, queue: str, epoch: str, written_before: int, after_id: str, limit: int
    ) -> list[JobRecord]:
        stmt = self.sql.undispatched(queue, epoch, written_before, after_id, limit)
        return [record(r) for r in await self._fetch("sweeping", *stmt)]

    async def expired_leases(self, queue: str, before: int, limit: int) -> list[JobRecord]:
        stmt = self.sql.expired_leases(queue, before, limit)
        return [record(r) for r in await self._fetch("reading expired leases", *stmt)]

    async def reclaim(self, items: Sequence[Reclaim], before: int, now: int) -> set[str]:
        done: set[str] = set()
        groups: dict[JobStatus, list[Reclaim]] = {}
        for it in items:
            groups.setdefault(it.status, []).append(it)
        for status, group in groups.items():
            group = sorted(group, key=lambda r: r.id)
            ids = [r.id for r in group]
            stmt = self.sql.reclaim(status, group, before, now)
            if status is JobStatus.TODO:
                count = await self._execute("reclaiming jobs", *stmt)
            else:  # failed for good: its children, if any, are released or cancelled
                count = await deps.settle_finals(
                    self.db, self.deps, "reclaiming jobs", stmt, ids, now
                )
            if count == len(group):
                done |= set(ids)
                continue
            states = await self.claim_states(ids)
            done |= {i for i in ids if (st := states.get(i)) and st.status is status}
        return done

    async def owner_running(self, queue: str, owner: str) -> int:
        rows = await self._fetch("counting a runner's jobs", *self.sql.owner_running(queue, owner))
        return int(rows[0][0])
