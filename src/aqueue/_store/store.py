"""All of aqueue's SQL, as named methods over one async engine.

Every state change is a compare-and-set ``UPDATE ... WHERE id IN (...) AND <expected
state>``; nothing reads and then writes. Statements run in autocommit mode: each one is
its own durable transaction, so a batch of N jobs costs one statement (no BEGIN/COMMIT
round trips). Multi-row statements touch rows by primary key; deadlocks and lock-wait
timeouts (MySQL 1213/1205) and SQLite's "database is locked" are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .._errors import ConfigurationError, EnqueueOutcomeUnknownError, StoreError
from .._models import IdRun, JobRecord, JobStatus, NewJob, validate_identifier
from .base import Claim, ClaimState, Commit, Finish, Reclaim, fences
from .conns import Held, HeldPool, alive
from .schema import MIGRATIONS, SCHEMA_VERSION, build_tables

log = logging.getLogger("aqueue.store")
T = TypeVar("T")

_RETRYABLE_MYSQL = {1213, 1205}
# asyncmy raises 2006 ("server has gone away") only when it cannot write the request (the
# stream is closed): the statement never reached the server. 2013/2055 come once it was
# written, while waiting for the reply: it may have run.
_NOT_SENT_MYSQL = 2006
_CONNECTION_LOST_MYSQL = {2013, 2055}
_JOB_COLUMNS = (
    "id, queue, task, payload, status, priority, attempts, stalls, max_attempts, run_at, "
    "lease_owner, lease_token, leased_until, result, error, unique_key, created_at, "
    "updated_at, finished_at"
)


try:  # the drivers' own errors: hot-path statements go to the driver directly
    from asyncmy.errors import MySQLError as _AsyncmyError
except ImportError:  # pragma: no cover - MySQL support not installed

    class _AsyncmyError(Exception):  # type: ignore[no-redef]
        pass


DB_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    sqlite3.Error,
    _AsyncmyError,
)


_NOT_CONNECTED = "aqueue: raised while connecting, before any statement was sent"


def _connect_failed(exc: BaseException) -> bool:
    """asyncmy's ``connect()`` on a connection closed during its handshake (a proxy that
    accepts, then resets, in front of a server that is down) raises a bare RuntimeError:
    nothing was sent, the database is unreachable."""
    return isinstance(exc, RuntimeError) and "Transport does not expose socket" in str(exc)


def _db_error(exc: BaseException) -> bool:
    """An error of the database or its connection (mapped to ``StoreError``)."""
    return isinstance(exc, DB_ERRORS) or _connect_failed(exc)


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", None)
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _is_retryable(exc: BaseException) -> bool:
    code = _mysql_code(exc)
    if code in _RETRYABLE_MYSQL:
        return True
    return "database is locked" in str(exc)


def _not_sent(exc: BaseException) -> bool:
    """True when the driver refused to send the statement on a closed connection: it did
    not run, so it can run again on another connection whatever it does."""
    if _connect_failed(exc):
        return True
    if not isinstance(exc, _AsyncmyError):
        return False
    code = _mysql_code(exc)
    # InterfaceError(0, ...): the connection was already closed, before any write
    return code == _NOT_SENT_MYSQL or (code == 0 and type(exc).__name__ == "InterfaceError")


def _is_definite(exc: BaseException) -> bool:
    """True when the statement certainly did not take effect (an error reported by the
    server about the statement), False when the outcome is unknown (connection lost)."""
    if isinstance(exc, sa.exc.IntegrityError | sa.exc.DataError | sa.exc.ProgrammingError):
        return True
    if type(exc).__name__ in ("IntegrityError", "DataError", "ProgrammingError"):
        return True
    if _connect_failed(exc) or _NOT_CONNECTED in getattr(exc, "__notes__", ()):
        return True
    code = _mysql_code(exc)
    if code is None:
        return False
    if code in (_NOT_SENT_MYSQL, 2003):  # not sent; could not connect
        return True
    return code not in _CONNECTION_LOST_MYSQL and code < 2000


def _connection_broken(exc: BaseException) -> bool:
    if isinstance(exc, OSError | _AsyncmyError) and not isinstance(exc, sqlite3.Error):
        code = _mysql_code(exc)
        return code is None or code >= 2000 or type(exc).__name__ == "InterfaceError"
    return False


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


class Store:
    """Named SQL operations over an async engine (MySQL/MariaDB via asyncmy, SQLite): the
    SQL implementation of ``JobStore``."""

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
        try:
            sa_url = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"invalid database URL: {exc}") from exc
        self.url = sa_url
        backend = sa_url.get_backend_name()
        if backend not in ("mysql", "mariadb", "sqlite"):
            raise ConfigurationError(
                f"unsupported database {backend!r}: use mysql+asyncmy://... or "
                "sqlite+aiosqlite:///path"
            )
        self.is_sqlite = backend == "sqlite"
        # JobStore capabilities: SQLite writes one statement at a time, and its clock is
        # this machine's.
        self.single_writer = self.is_sqlite
        self.shares_clock = self.is_sqlite
        if self.is_sqlite and sa_url.drivername != "sqlite+aiosqlite":
            sa_url = sa_url.set(drivername="sqlite+aiosqlite")
        if not self.is_sqlite and sa_url.drivername in ("mysql", "mariadb"):
            sa_url = sa_url.set(drivername=f"{backend}+asyncmy")
        # Autocommit: each statement is its own transaction, so there is nothing to roll
        # back when a connection returns to the pool.
        kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
        if not self.is_sqlite:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)
        try:
            self.engine: AsyncEngine = create_async_engine(sa_url, **kwargs)
        except ImportError as exc:
            raise ConfigurationError(
                f"the driver for {sa_url.drivername} is not installed ({exc}); for MySQL "
                "install aqueue[mysql]"
            ) from exc
        self._md, self.jobs, self.meta = build_tables(self.table_name)
        self._ph = "?" if self.is_sqlite else "%s"
        q = self.engine.dialect.identifier_preparer.quote
        self._t = q(self.table_name)
        self._sqlite_synchronous = sqlite_synchronous
        self._lock_wait_timeout = int(lock_wait_timeout)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._install_connect_hooks()
        self.conns = HeldPool(self.engine, keep=pool_size if not self.is_sqlite else 5)
        # the open claims' (MySQL): autocommit off, so a claim needs no BEGIN
        self.claim_conns = HeldPool(self.engine, keep=4, autocommit=False)

    # -- plumbing -------------------------------------------------------------------

    def _install_connect_hooks(self) -> None:
        sync_engine = self.engine.sync_engine
        if self.is_sqlite:
            sync = self._sqlite_synchronous

            @event.listens_for(sync_engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=15000")
                cur.execute(f"PRAGMA synchronous={sync}")
                cur.close()

        else:
            wait = self._lock_wait_timeout

            @event.listens_for(sync_engine, "connect")
            def _mysql_connect(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                cur.execute(f"SET SESSION innodb_lock_wait_timeout = {wait}")
                cur.close()

            # The engine's pool hands out a connection the server closed (after a restart,
            # all of them) as readily as a live one. pool_pre_ping would find out with a
            # round trip per checkout; the driver already knows, for free: such a
            # connection is replaced by a new one instead.
            @event.listens_for(sync_engine, "checkout")
            def _mysql_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
                if not alive(dbapi_conn.driver_connection):
                    raise sa.exc.DisconnectionError("connection closed by the server")

    def earlier(self, column: str) -> str:
        """SQL for the earlier of ``column`` and two parameters holding one time (SQLite
        has no ``LEAST``)."""
        return f"CASE WHEN {column} > {self._ph} THEN {self._ph} ELSE {column} END"

    def _in(self, n: int) -> str:
        return ", ".join([self._ph] * n)

    async def _run(self, what: str, fn: Callable[[], Awaitable[T]], attempts: int = 6) -> T:
        delay = 0.01
        for i in range(attempts):
            try:
                return await fn()
            except Exception as exc:
                if not _db_error(exc):
                    raise
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError() from exc  # never swallow a cancellation
                if i < attempts - 1 and (_is_retryable(exc) or _not_sent(exc)):
                    log.debug("%s: retrying after %s", what, _short(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                raise StoreError(f"{what} failed: {type(exc).__name__}: {_short(exc)}") from exc
        raise AssertionError("unreachable")

    async def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; return the matched row count."""
        if self._write_lock is not None:
            async with self._write_lock:
                return await self._exec_now(sql, params)
        return await self._exec_now(sql, params)

    # Statements go to the driver's connection directly: through SQLAlchemy's Connection
    # every statement would also cost a ROLLBACK round trip when the connection is given
    # back (autobegin), even in autocommit mode. The connections stay checked out between
    # statements (``HeldPool``); a broken one is invalidated so it is not used again.

    async def _exec_now(self, sql: str, params: Sequence[Any]) -> int:
        async def run(raw: Any) -> int:
            if self.is_sqlite:
                async with raw.execute(sql, tuple(params)) as cur:
                    return int(cur.rowcount)
            async with raw.cursor() as cur:
                await cur.execute(sql, tuple(params))
                return int(cur.rowcount)

        return await self._on_held(run)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        async def run(raw: Any) -> list[Sequence[Any]]:
            if self.is_sqlite:
                async with raw.execute(sql, tuple(params)) as cur:
                    return [tuple(r) for r in await cur.fetchall()]
            async with raw.cursor() as cur:
                await cur.execute(sql, tuple(params))
                return [tuple(r) for r in await cur.fetchall()]

        return await self._on_held(run)

    async def _on_held(self, run: Callable[[Any], Awaitable[T]], sends: int = 3) -> T:
        """``run`` on a held connection. One the driver could not send the statement on
        (closed since :meth:`HeldPool.take` looked) is dropped, its dead siblings with
        it, and the statement goes out on another: it never ran, so this is safe for any
        statement, and its caller does not see an error (an INSERT no unknown outcome)."""
        for i in range(sends):
            try:
                held = await self.conns.take()
            except Exception as exc:
                # No connection, so nothing was sent: a refusal, never an unknown outcome
                # (an INSERT's caller may simply enqueue again).
                exc.add_note(_NOT_CONNECTED)
                raise
            try:
                out = await run(held.raw)
            except BaseException as exc:
                await self._after_error(held, exc)
                if i < sends - 1 and _not_sent(exc):
                    log.debug("statement not sent (%s): on another connection", _short(exc))
                    continue
                raise
            await self.conns.give(held)
            return out
        raise AssertionError("unreachable")

    async def _after_error(self, held: Held, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            await self.conns.discard(held)
        elif _connection_broken(exc):
            await self.conns.discard(held)
            await self.conns.sweep()  # the server may have closed its siblings too
        else:  # the server refused the statement: the connection is fine
            await self.conns.give(held)

    async def close(self) -> None:
        await self.conns.close()
        await self.claim_conns.close()
        await self.engine.dispose()

    # -- schema -------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        async def go() -> int | None:
            async with self.engine.connect() as conn:
                has = await conn.run_sync(lambda c: sa.inspect(c).has_table(self.meta.name))
                if not has:
                    return None
                row = (
                    await conn.execute(
                        sa.select(self.meta.c.value).where(self.meta.c.name == "schema_version")
                    )
                ).first()
                return int(row[0]) if row else None

        return await self._run("reading the schema version", go)

    async def init_schema(self) -> int:
        """Create the tables when missing; return the schema version found or created."""

        async def go() -> int:
            async with self.engine.connect() as conn:
                await conn.run_sync(self._md.create_all)
                row = (
                    await conn.execute(
                        sa.select(self.meta.c.value).where(self.meta.c.name == "schema_version")
                    )
                ).first()
                if row is not None:
                    return int(row[0])
                # another process may have initialised it first
                with contextlib.suppress(sa.exc.IntegrityError):
                    await conn.execute(
                        self.meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION))
                    )
                return SCHEMA_VERSION

        for attempt in range(5):
            try:
                version = await self._run("creating the schema", go)
                break
            except StoreError as exc:
                # Several processes creating the tables at once: one wins, the others
                # see "already exists" (MySQL 1050 / SQLite); look again.
                if attempt == 4 or "already exists" not in str(exc):
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"table {self.table_name} has schema version {version}, newer than this "
                f"aqueue ({SCHEMA_VERSION}): upgrade aqueue"
            )
        if version < SCHEMA_VERSION:
            raise ConfigurationError(
                f"table {self.table_name} has schema version {version}; run "
                "`python -m aqueue db upgrade app:queue`"
            )
        return version

    async def upgrade_schema(self) -> tuple[int, int]:
        before = await self.schema_version()
        if before is None:
            await self.init_schema()
            return (0, SCHEMA_VERSION)
        version = before
        while version < SCHEMA_VERSION:
            migrate = MIGRATIONS[version]

            async def go(migrate: Any = migrate, version: int = version) -> None:
                async with self.engine.begin() as conn:
                    await conn.run_sync(migrate, self.jobs)
                    await conn.execute(
                        self.meta.update()
                        .where(self.meta.c.name == "schema_version")
                        .values(value=str(version + 1))
                    )

            await self._run(f"migrating schema {version}->{version + 1}", go)
            version += 1
        return (before, version)

    async def drop_schema(self) -> None:
        async def go() -> None:
            async with self.engine.connect() as conn:
                await conn.run_sync(self._md.drop_all)

        await self._run("dropping the tables", go)

    async def server_time_us(self) -> int:
        sql = (
            "SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
            if self.is_sqlite
            else "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
        )
        rows = await self._run("reading the server time", lambda: self._fetch(sql))
        return int(rows[0][0])

    # -- enqueue ------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: int) -> list[str | BaseException]:
        """Insert many jobs in one statement. Returns per job the id that now stands for
        it (its own, or the existing job's for a live unique key), or the exception that
        affects only that job. A batch that fails as a whole is split in halves so one bad
        row does not fail the other producers."""
        try:
            return await self._insert_batch(jobs, now)
        except EnqueueOutcomeUnknownError:
            raise
        except StoreError as exc:
            if len(jobs) == 1:
                return [exc]
            if not _is_definite(exc.__cause__ or exc):
                raise
            mid = len(jobs) // 2
            left = await self.insert_jobs(jobs[:mid], now)
            right = await self.insert_jobs(jobs[mid:], now)
            return left + right

    async def _insert_batch(self, jobs: Sequence[NewJob], now: int) -> list[str | BaseException]:
        # The columns in NewJob's field order: a row's parameters are its first nine.
        cols = (
            "id, queue, task, payload, priority, max_attempts, run_at, created_at, unique_key, "
            "status, attempts, stalls, updated_at"
        )
        # The values every new row shares are literals: fewer parameters to escape.
        p = self._ph
        row = f"({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 'todo', 0, 0, {int(now)})"
        params: list[Any] = []
        for j in jobs:
            params += j[:9]
        careful = any(j.explicit_id or j.unique_key for j in jobs)
        sql = f"INSERT INTO {self._t} ({cols}) VALUES " + ", ".join([row] * len(jobs))
        if careful:
            sql += (
                " ON CONFLICT DO NOTHING" if self.is_sqlite else " ON DUPLICATE KEY UPDATE id = id"
            )
        try:
            await self._exec(sql, params)
        except Exception as exc:
            if not _db_error(exc):
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError() from exc
            if _is_definite(exc):
                raise StoreError(f"enqueue failed: {type(exc).__name__}: {_short(exc)}") from exc
            first = jobs[0].id
            raise EnqueueOutcomeUnknownError(
                first, f"enqueue outcome unknown ({_short(exc)}) for {len(jobs)} job(s)"
            ) from exc
        if not careful:
            return [j.id for j in jobs]
        return await self._resolve_conflicts(jobs)

    async def _resolve_conflicts(self, jobs: Sequence[NewJob]) -> list[str | BaseException]:
        ids = [j.id for j in jobs]
        rows = await self._run(
            "reading inserted jobs",
            lambda: self._fetch(
                f"SELECT id, queue, unique_key FROM {self._t} WHERE id IN ({self._in(len(ids))})",
                ids,
            ),
        )
        present = {r[0]: (r[1], r[2]) for r in rows}
        out: list[str | BaseException] = []
        for j in jobs:
            if j.id in present:
                out.append(j.id)
                continue
            if j.unique_key:
                found = await self._run(
                    "reading a unique job",
                    lambda j=j: self._fetch(  # type: ignore[misc]
                        f"SELECT id FROM {self._t} WHERE queue = {self._ph} AND "
                        f"unique_key = {self._ph}",
                        (j.queue, j.unique_key),
                    ),
                )
                if found:
                    out.append(str(found[0][0]))
                    continue
            out.append(StoreError(f"job {j.id} was not stored (conflict)"))
        return out

    # -- claim / finish ---------------------------------------------------------------

    async def finish(self, items: Sequence[Finish], now: int) -> set[str]:
        """Record finished attempts, fenced by lease token. Returns the ids accepted."""
        accepted: set[str] = set()
        groups: dict[JobStatus, list[Finish]] = {}
        for f in items:
            groups.setdefault(f.status, []).append(f)
        for status, group in groups.items():
            accepted |= await self._finish_group(status, group, now)
        return accepted

    def _case(self, column_values: Sequence[tuple[str, Any]], params: list[Any]) -> str:
        parts = ["CASE id"]
        for job_id, value in column_values:
            parts.append(f"WHEN {self._ph} THEN {self._ph}")
            params.extend((job_id, value))
        parts.append("END")
        return " ".join(parts)

    def _tokens_match(self, items: Sequence[tuple[str, str]], params: list[Any]) -> str:
        """SQL true for a row whose lease token is the one given with its id. Jobs come in
        claim batches, each under one token, so this names each token once (an id-to-token
        CASE would spell out every pair, a statement twice as long to send and parse)."""
        by_token: dict[str, list[str]] = {}
        for job_id, token in items:
            by_token.setdefault(token, []).append(job_id)
        p = self._ph
        if len(by_token) == 1:
            params.append(items[0][1])
            return f"lease_token = {p}"
        parts = []
        for token, ids in by_token.items():
            params.append(token)
            params.extend(ids)
            parts.append(f"(lease_token = {p} AND id IN ({self._in(len(ids))}))")
        return "(" + " OR ".join(parts) + ")"

    def _set_value(self, name: str, values: Sequence[tuple[str, Any]], params: list[Any]) -> str:
        distinct = {v for _, v in values}
        if len(distinct) == 1:
            params.append(values[0][1])
            return f"{name} = {self._ph}"
        return f"{name} = " + self._case(values, params)

    async def _finish_group(self, status: JobStatus, group: Sequence[Finish], now: int) -> set[str]:
        group = sorted(group, key=lambda f: f.id)
        p = self._ph
        params: list[Any] = [status.value, now]
        sets = [f"status = {p}", f"updated_at = {p}"]
        if status is JobStatus.DONE:
            sets.append(self._set_value("result", [(f.id, f.result) for f in group], params))
        else:
            sets.append(self._set_value("error", [(f.id, f.error) for f in group], params))
        if status is JobStatus.TODO:
            sets.append(self._set_value("run_at", [(f.id, f.run_at or now) for f in group], params))
            # Not in Redis until the follow-up message is pushed and marked: if that push
            # is lost, the sweeper sends it.
            sets.append(
                "lease_owner = NULL, lease_token = NULL, leased_until = NULL, dispatched_at = NULL"
            )
        else:
            sets.append(f"finished_at = {p}, leased_until = NULL, unique_key = NULL")
            params.append(now)
        ids = [f.id for f in group]
        params.extend(ids)
        where = f"id IN ({self._in(len(ids))}) AND status = 'running' AND "
        where += self._tokens_match([(f.id, f.token) for f in group], params)
        sql = f"UPDATE {self._t} SET {', '.join(sets)} WHERE {where}"
        count = await self._run("recording finished jobs", lambda: self._exec(sql, params))
        if count == len(group):
            return set(ids)
        # Some were rejected (late finish after a lost lease): find out which. Rows this
        # statement changed carry its updated_at.
        rows = await self._run(
            "reading finished jobs",
            lambda: self._fetch(
                f"SELECT id FROM {self._t} WHERE id IN ({self._in(len(ids))}) "
                f"AND status = {p} AND updated_at = {p}",
                [*ids, status.value, now],
            ),
        )
        return {r[0] for r in rows}

    async def release_owner(
        self, queue: str, owner: str, now: int, *, keep: Sequence[str] = ()
    ) -> int:
        """Put back every job of ``queue`` still ``running`` under ``owner`` (graceful
        shutdown, once the owner's handlers have all stopped): ``todo``, attempt not used
        up. A runner serves one queue; naming it reads that queue's running jobs only.
        ``keep``: jobs left running (a handler that ignored its cancellation)."""
        p = self._ph
        params: list[Any] = [now, queue, owner, *keep]
        sql = (
            f"UPDATE {self._t} SET status = 'todo', attempts = attempts - 1, "
            f"lease_owner = NULL, lease_token = NULL, leased_until = NULL, updated_at = {p} "
            f"WHERE queue = {p} AND status = 'running' AND lease_owner = {p}"
        )
        if keep:
            sql += f" AND id NOT IN ({self._in(len(keep))})"
        return await self._run("releasing jobs", lambda: self._exec(sql, params))

    async def renew(self, items: Sequence[tuple[str, str]], leased_until: int) -> set[str]:
        """Extend the leases of these (id, token) claims in one statement; return the ids
        whose lease is gone (token revoked, job reclaimed or repushed)."""
        if not items:
            return set()
        items = sorted(items)
        params: list[Any] = [leased_until]
        ids = [i for i, _ in items]
        params.extend(ids)
        where = f"id IN ({self._in(len(ids))}) AND status = 'running' AND "
        where += self._tokens_match(items, params)
        sql = f"UPDATE {self._t} SET leased_until = {self._ph} WHERE {where}"
        count = await self._run("renewing leases", lambda: self._exec(sql, params))
        if count == len(items):
            return set()
        rows = await self._run(
            "reading renewed leases",
            lambda: self._fetch(
                f"SELECT id, lease_token, status FROM {self._t} WHERE id IN ({self._in(len(ids))})",
                ids,
            ),
        )
        have = {r[0]: (r[1], r[2]) for r in rows}
        return {i for i, tok in items if have.get(i) != (tok, "running")}

    async def fail_unclaimed(self, job_id: str, error: str, now: int) -> bool:
        """Fail a ``todo`` job that cannot be run (malformed message)."""
        p = self._ph
        sql = (
            f"UPDATE {self._t} SET status = 'failed', error = {p}, finished_at = {p}, "
            f"run_at = {self.earlier('run_at')}, updated_at = {p}, unique_key = NULL "
            f"WHERE id = {p} AND status = 'todo'"
        )
        params = (error, now, now, now, now, job_id)
        return await self._run("failing a job", lambda: self._exec(sql, params)) > 0

    # -- reads ----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._run(
            "reading a job",
            lambda: self._fetch(
                f"SELECT {_JOB_COLUMNS} FROM {self._t} WHERE id = {self._ph}", (job_id,)
            ),
        )
        return _record(rows[0]) if rows else None

    async def count_by_status(self, queue: str) -> dict[JobStatus, int]:
        rows = await self._run(
            "counting jobs",
            lambda: self._fetch(
                f"SELECT status, COUNT(*) FROM {self._t} WHERE queue = {self._ph} GROUP BY status",
                (queue,),
            ),
        )
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in rows:
            counts[JobStatus(status)] = int(n)
        return counts

    async def dispatchable(
        self, queue: str, after_id: str, limit: int, now: int
    ) -> list[JobRecord]:
        """Keyset page of jobs that should be in Redis: ``todo``, or ``running`` with an
        expired lease."""
        p = self._ph
        rows = await self._run(
            "reading dispatchable jobs",
            lambda: self._fetch(
                f"SELECT {_JOB_COLUMNS} FROM {self._t} WHERE queue = {p} AND id > {p} AND "
                f"(status = 'todo' OR (status = 'running' AND leased_until < {p})) "
                f"ORDER BY id LIMIT {int(limit)}",
                (queue, after_id, now),
            ),
        )
        return [_record(r) for r in rows]

    async def mark_dispatched(
        self,
        marks: Sequence[tuple[str, int]],
        epoch: str,
        now: int,
        runs: Sequence[tuple[IdRun, int]] = (),
        *,
        unmarked_only: bool = False,
    ) -> None:
        """Record that these jobs' messages are in Redis under ``epoch``. Each job comes
        with the ``updated_at`` of the write its message was pushed after, and is marked
        only if no other write came since (a mark arriving late must not cover a later
        write's message that never reached Redis): ``marks`` are ``(id, written_at)``,
        ``runs`` ranges of batch ids (three values instead of a thousand) with theirs.
        ``unmarked_only`` leaves alone the rows that already carry a mark, such as those a
        runner claimed meanwhile (a claim marks the row itself): they are read, not
        written."""
        if not marks and not runs:
            return
        p = self._ph
        by_write: dict[int, list[str]] = {}
        for job_id, written_at in marks:
            by_write.setdefault(written_at, []).append(job_id)
        where: list[str] = []
        params: list[Any] = [now, epoch]
        for written_at, ids in by_write.items():
            where.append(f"(updated_at = {p} AND id IN ({self._in(len(ids))}))")
            params.extend((written_at, *sorted(ids)))
        for r, written_at in runs:
            where.append(f"(id BETWEEN {p} AND {p} AND created_at = {p} AND updated_at = {p})")
            params.extend((r.first, r.last, r.created_at, written_at))
        sql = (
            f"UPDATE {self._t} SET dispatched_at = {p}, dispatch_epoch = {p} "
            f"WHERE ({' OR '.join(where)})"
        )
        if unmarked_only:
            sql += " AND dispatched_at IS NULL"
        await self._run("marking jobs dispatched", lambda: self._exec(sql, params))

    async def unfinished_count(self, queue: str, now: int) -> int:
        p = self._ph
        rows = await self._run(
            "counting unfinished jobs",
            lambda: self._fetch(
                f"SELECT COUNT(*) FROM {self._t} WHERE queue = {p} AND "
                f"((status = 'todo' AND run_at <= {p}) OR status = 'running')",
                (queue, now),
            ),
        )
        return int(rows[0][0])

    async def purge_queue(self, queue: str) -> int:
        sql = f"DELETE FROM {self._t} WHERE queue = {self._ph}"
        return await self._run("purging", lambda: self._exec(sql, (queue,)))

    # -- claims ----------------------------------------------------------------------

    def _claim_sql(self, c: Claim) -> tuple[str, list[Any], list[str]]:
        p = self._ph
        fenced = fences(c.items)
        ordered = sorted(fenced)
        params: list[Any] = [c.owner, c.token, c.leased_until, c.now, c.now, *ordered, c.now]
        where = f"id IN ({self._in(len(ordered))}) AND status = 'todo' AND run_at <= {p}"
        for col, k in (("stalls", 0), ("attempts", 1)):
            values = {v[k] for v in fenced.values()}
            if len(values) == 1:  # the usual case: one literal, no CASE
                where += f" AND {col} = {int(values.pop())}"
            else:
                where += f" AND {col} = " + self._case([(i, fenced[i][k]) for i in ordered], params)
        sql = (
            f"UPDATE {self._t} SET status = 'running', lease_owner = {p}, lease_token = {p}, "
            f"leased_until = {p}, attempts = attempts + 1, updated_at = {p}, "
            f"dispatched_at = COALESCE(dispatched_at, {p}) WHERE {where}"
        )
        return sql, params, ordered

    def _won_sql(self, n: int) -> str:
        return f"SELECT id FROM {self._t} WHERE id IN ({self._in(n)}) AND lease_token = {self._ph}"

    async def claim(self, c: Claim, *, again: bool = False) -> set[str]:
        """Claim the jobs that are ``todo``, due, and have the stall and attempt counts their
        message carries: a stale copy cannot claim (one made before a reclaim, a retry or a
        repush; the copy made by whoever wrote the job last carries SQL's counts); returns
        the ids won. ``again``: the token was used
        before (a claim whose commit failed, taken again): jobs held under it count as won."""
        if not c.items:
            return set()
        sql, params, ordered = self._claim_sql(c)
        count = await self._run("claiming jobs", lambda: self._exec(sql, params))
        if count == len(ordered):
            return set(ordered)
        if count == 0 and not again:
            return set()
        rows = await self._run(
            "reading claimed jobs",
            lambda: self._fetch(self._won_sql(len(ordered)), [*ordered, c.token]),
        )
        return {r[0] for r in rows}

    async def claim_again(self, c: Claim) -> tuple[set[str], set[str]]:
        """Take a claim again whose commit failed (rolled back, or its outcome unknown), under
        the same token: returns ``(held, retaken)``, the ids whose first claim had committed
        after all (SQL holds them under this token) and the ids claimed now. An id in neither
        was claimed elsewhere meanwhile (or can no longer run)."""
        if not c.items:
            return set(), set()
        ids = sorted({i for i, _, _ in c.items})
        rows = await self._run(
            "reading claimed jobs",
            lambda: self._fetch(
                f"SELECT id FROM {self._t} WHERE id IN ({self._in(len(ids))}) "
                f"AND lease_token = {self._ph} AND status = 'running'",
                [*ids, c.token],
            ),
        )
        held = {r[0] for r in rows}
        rest = [item for item in c.items if item[0] not in held]
        if not rest:
            return held, set()
        retaken = await self.claim(Claim(rest, c.owner, c.token, c.leased_until, c.now), again=True)
        return held, retaken

    async def claim_open(self, c: Claim) -> tuple[set[str], Commit | None]:
        """:func:`claim` with its commit left to the caller: returns the ids won and the
        commit to await before anything is recorded for them (None: nothing to commit). On
        SQLite, whose writer lock would be held meanwhile, the claim is committed at once."""
        if self.is_sqlite or not c.items:
            return await self.claim(c), None
        sql, params, ordered = self._claim_sql(c)
        return await self._run("claiming jobs", lambda: self._open(sql, params, ordered, c.token))

    async def _open(
        self, sql: str, params: list[Any], ordered: list[str], token: str
    ) -> tuple[set[str], Commit | None]:
        conns = self.claim_conns  # autocommit off: the UPDATE opens the transaction
        held = await conns.take()
        raw: Any = held.raw
        try:
            async with raw.cursor() as cur:
                await cur.execute(sql, tuple(params))
                count = int(cur.rowcount)
                if count == len(ordered):
                    won = set(ordered)
                elif count == 0:
                    won = set()
                else:
                    await cur.execute(self._won_sql(len(ordered)), (*ordered, token))
                    won = {r[0] for r in await cur.fetchall()}
            if not won:
                await raw.commit()  # nothing changed: no log flush to wait for
        except BaseException:
            await conns.discard(held)  # the server rolls the transaction back
            raise
        if not won:
            await conns.give(held)
            return won, None

        async def commit() -> None:
            try:
                await self._run("committing claims", raw.commit, attempts=1)
            except BaseException:
                await conns.discard(held)
                raise
            await conns.give(held)

        return won, commit

    async def claim_states(self, ids: Sequence[str]) -> dict[str, ClaimState]:
        """What SQL says about jobs whose claim was lost (missing ids: no such job)."""
        if not ids:
            return {}
        rows = await self._run(
            "reading job states",
            lambda: self._fetch(
                f"SELECT id, status, run_at, leased_until, stalls, attempts FROM {self._t} "
                f"WHERE id IN ({self._in(len(ids))})",
                list(ids),
            ),
        )
        return {
            r[0]: ClaimState(JobStatus(r[1]), int(r[2]), r[3], int(r[4]), int(r[5])) for r in rows
        }

    async def release_claims(self, items: Sequence[tuple[str, str]], now: int) -> int:
        """Give back claimed jobs that did not start, by ``(id, token)``: ``todo`` again,
        attempt not used up, no stall counted. A claim revoked meanwhile is left alone."""
        if not items:
            return 0
        p = self._ph
        params: list[Any] = [now]
        ids = sorted(i for i, _ in items)
        params.extend(ids)
        where = f"id IN ({self._in(len(ids))}) AND status = 'running' AND "
        where += self._tokens_match(sorted(items), params)
        sql = (
            f"UPDATE {self._t} SET status = 'todo', attempts = attempts - 1, "
            f"lease_owner = NULL, lease_token = NULL, leased_until = NULL, updated_at = {p} "
            f"WHERE {where}"
        )
        return await self._run("releasing claims", lambda: self._exec(sql, params))

    # -- recovery --------------------------------------------------------------------

    async def expired_leases(self, queue: str, before: int, limit: int) -> list[JobRecord]:
        """``running`` jobs of ``queue`` whose lease ended before ``before`` (oldest first)."""
        p = self._ph
        rows = await self._run(
            "reading expired leases",
            lambda: self._fetch(
                f"SELECT {_JOB_COLUMNS} FROM {self._t} WHERE status = 'running' AND "
                f"leased_until < {p} AND queue = {p} ORDER BY leased_until LIMIT {int(limit)}",
                (before, queue),
            ),
        )
        return [_record(r) for r in rows]

    async def reclaim(self, items: Sequence[Reclaim], before: int, now: int) -> set[str]:
        """Apply reclaim decisions, fenced by the token that was read and by the lease still
        being expired. The stall is counted; the attempt the dead run used is given back.
        Returns the ids changed."""
        done: set[str] = set()
        groups: dict[JobStatus, list[Reclaim]] = {}
        for it in items:
            groups.setdefault(it.status, []).append(it)
        for status, group in groups.items():
            group = sorted(group, key=lambda r: r.id)
            p = self._ph
            params: list[Any] = [status.value, now]
            sets = [
                f"status = {p}",
                f"updated_at = {p}",
                "stalls = stalls + 1",
                "lease_owner = NULL",
                "lease_token = NULL",
                "leased_until = NULL",
            ]
            if status is JobStatus.TODO:
                sets.append("attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END")
                sets.append("dispatched_at = NULL")  # until the suspect message is pushed
                sets.append(f"run_at = {p}")
                params.append(now)
            else:
                sets.append(f"finished_at = {p}, unique_key = NULL")
                params.append(now)
                sets.append(self._set_value("error", [(r.id, r.error) for r in group], params))
            ids = [r.id for r in group]
            params.extend(ids)
            where = (
                f"id IN ({self._in(len(ids))}) AND status = 'running' AND leased_until < {p} AND "
            )
            params.append(before)
            where += self._tokens_match([(r.id, r.token) for r in group], params)
            sql = f"UPDATE {self._t} SET {', '.join(sets)} WHERE {where}"
            count = await self._run("reclaiming jobs", self._bind(sql, params))
            if count == len(group):
                done |= set(ids)
                continue
            states = await self.claim_states(ids)
            done |= {i for i in ids if (st := states.get(i)) and st.status is status}
        return done

    async def owner_running(self, queue: str, owner: str) -> int:
        """How many jobs of ``queue`` run under ``owner`` (a runner serves one queue)."""
        p = self._ph
        rows = await self._run(
            "counting a runner's jobs",
            lambda: self._fetch(
                f"SELECT COUNT(*) FROM {self._t} WHERE queue = {p} AND status = 'running' "
                f"AND lease_owner = {p}",
                (queue, owner),
            ),
        )
        return int(rows[0][0])

    async def undispatched(
        self, queue: str, epoch: str, written_before: int, after_id: str, limit: int
    ) -> list[JobRecord]:
        """Keyset page of ``todo`` jobs that this Redis (epoch) may not hold: not marked
        dispatched since their last write (enqueue, retry, reclaim, repush) and that write
        older than the grace period, or dispatched under another epoch. The grace runs from
        the last write, not from creation: a job reclaimed or retried a moment ago is being
        pushed by whoever wrote it, and a second copy would lose its place (a reclaimed job's
        copy in a ready list could run beside other jobs instead of in its suspect lane)."""
        p = self._ph
        rows = await self._run(
            "sweeping",
            lambda: self._fetch(
                f"SELECT {_JOB_COLUMNS} FROM {self._t} WHERE queue = {p} AND status = 'todo' "
                f"AND id > {p} AND ((dispatched_at IS NULL AND updated_at < {p}) OR "
                "(dispatched_at IS NOT NULL AND "
                f"(dispatch_epoch IS NULL OR dispatch_epoch <> {p}))) "
                f"ORDER BY id LIMIT {int(limit)}",
                (queue, after_id, written_before, epoch),
            ),
        )
        return [_record(r) for r in rows]

    async def repush(self, job_id: str, now: int, *, force: bool) -> JobRecord | None:
        """Force a job back to ``todo`` with fresh attempts. A ``running`` job is changed only
        with ``force``: its token is revoked and it may start again only when the old lease
        would have ended, by which time its runner has noticed and cancelled the handler.
        Returns the job as it now stands (``None`` when there is no such job)."""
        p = self._ph
        base = (
            f"status = 'todo', attempts = 0, stalls = 0, lease_owner = NULL, lease_token = NULL, "
            f"dispatched_at = NULL, "
            f"leased_until = NULL, finished_at = NULL, result = NULL, error = NULL, "
            f"updated_at = {p}"
        )
        sql = f"UPDATE {self._t} SET {base}, run_at = {p} WHERE id = {p} AND status <> 'running'"
        changed = await self._run("repushing a job", lambda: self._exec(sql, (now, now, job_id)))
        if not changed and force:
            # run_at first: MySQL evaluates SET assignments left to right.
            sql = (
                f"UPDATE {self._t} SET run_at = COALESCE(leased_until, {p}), {base} "
                f"WHERE id = {p} AND status = 'running'"
            )
            await self._run("repushing a running job", lambda: self._exec(sql, (now, now, job_id)))
        return await self.get_job(job_id)

    async def cancel(self, job_id: str, reason: str, now: int) -> bool:
        """``todo``/``running`` -> ``cancelled`` (final). A running job's token is revoked:
        its runner cancels the handler at its next lease renewal, and its finish is refused."""
        p = self._ph
        # A delayed job cancelled before it was due: run_at becomes the cancel time, as a
        # finished job's run_at is never after its finished_at (the purge relies on it).
        sql = (
            f"UPDATE {self._t} SET status = 'cancelled', error = {p}, finished_at = {p}, "
            f"run_at = {self.earlier('run_at')}, updated_at = {p}, lease_token = NULL, "
            f"leased_until = NULL, unique_key = NULL "
            f"WHERE id = {p} AND status IN ('todo', 'running')"
        )
        params = (reason, now, now, now, now, job_id)
        return await self._run("cancelling a job", lambda: self._exec(sql, params)) > 0

    async def purge_finished(self, queue: str, before: int, limit: int = 5000) -> int:
        """Delete finished jobs (done/failed/cancelled) of ``queue`` that finished before
        ``before``, in pages. Returns how many were deleted.

        No index holds ``finished_at`` (every finish would move it): a finished job's
        ``run_at`` is never after its ``finished_at`` (it ran when due, or was cancelled with
        ``run_at`` brought forward), so ``run_at < before`` bounds the index range to read
        without missing any, and ``finished_at`` is checked on those rows only."""
        p = self._ph
        total = 0
        while True:
            rows = await self._run(
                "listing finished jobs",
                lambda: self._fetch(
                    f"SELECT id FROM {self._t} WHERE queue = {p} AND "
                    f"status IN ('done', 'failed', 'cancelled') AND run_at < {p} "
                    f"AND finished_at < {p} LIMIT {int(limit)}",
                    (queue, before, before),
                ),
            )
            if not rows:
                return total
            ids = sorted(r[0] for r in rows)
            sql = (
                f"DELETE FROM {self._t} WHERE id IN ({self._in(len(ids))}) "
                "AND status IN ('done', 'failed', 'cancelled')"
            )
            total += await self._run("purging finished jobs", self._bind(sql, ids))
            if len(rows) < limit:
                return total

    async def ids_by_status(self, queue: str, status: JobStatus, limit: int) -> list[str]:
        p = self._ph
        rows = await self._run(
            "listing jobs",
            lambda: self._fetch(
                f"SELECT id FROM {self._t} WHERE queue = {p} AND status = {p} ORDER BY id "
                f"LIMIT {int(limit)}",
                (queue, status.value),
            ),
        )
        return [r[0] for r in rows]

    def _bind(self, sql: str, params: Sequence[Any]) -> Callable[[], Awaitable[int]]:
        async def go() -> int:
            return await self._exec(sql, params)

        return go

    async def waiting_jobs(self, queue: str, cap: int) -> int:
        """The jobs of ``queue`` that can still run: ``todo``, due or delayed (never
        cancelled, finished or running ones), counted up to ``cap``. The count reads the
        ``(queue, status, run_at)`` index, and the cap bounds it when a queue holds far
        more than its ``max_size`` (jobs enqueued by producers without one)."""
        p = self._ph
        sql = (
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {self._t} WHERE queue = {p} AND "
            f"status = 'todo' LIMIT {int(cap)}) AS waiting"
        )
        rows = await self._run("counting waiting jobs", lambda: self._fetch(sql, (queue,)))
        return int(rows[0][0])

    async def first_seen(self, key: str, now: int) -> int:
        """When the schedule ``key`` was first seen (UNIX µs): ``now`` if never before, and
        then recorded. Every runner reads the same time: the first insert wins."""
        p = self._ph
        meta = self.engine.dialect.identifier_preparer.quote(self.meta.name)
        insert = "INSERT OR IGNORE" if self.is_sqlite else "INSERT IGNORE"
        await self._run(
            "recording a schedule",
            lambda: self._exec(
                f"{insert} INTO {meta} (name, value) VALUES ({p}, {p})", (key, str(now))
            ),
        )
        rows = await self._run(
            "reading a schedule",
            lambda: self._fetch(f"SELECT value FROM {meta} WHERE name = {p}", (key,)),
        )
        return int(rows[0][0]) if rows else now


def _record(r: Sequence[Any]) -> JobRecord:
    return JobRecord(
        id=r[0],
        queue=r[1],
        task=r[2],
        payload=r[3],
        status=JobStatus(r[4]),
        priority=int(r[5]),
        attempts=int(r[6]),
        stalls=int(r[7]),
        max_attempts=int(r[8]),
        run_at=int(r[9]),
        lease_owner=r[10],
        lease_token=r[11],
        leased_until=r[12],
        result=r[13],
        error=r[14],
        unique_key=r[15],
        created_at=int(r[16]),
        updated_at=int(r[17]),
        finished_at=r[18],
    )
