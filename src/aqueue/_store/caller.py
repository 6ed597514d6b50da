"""Statements run on the application's own SQLAlchemy connection (transactional
enqueue): the same SQL text as the store's (its dialect's builders), executed inside the
caller's transaction, which aqueue never commits nor rolls back.

On MySQL, a statement with long text goes out rendered by aqueue (``mysqltext``), as the
store's own do: the driver's quoting of a large argument would cost the caller's
transaction milliseconds of CPU.

The insert always takes the insert-or-ignore form: a conflicting job id or live unique
key skips the row instead of raising, so it cannot abort the caller's transaction (on
PostgreSQL any error would); the job that stands is then read back on the same
connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .._errors import ConfigurationError, StoreError
from .._models import JobRecord, NewJob
from . import mysqltext
from .base import JobStore
from .sql import record
from .sql.tags import TAGS_PER_INSERT
from .store import Store

Caller = AsyncConnection | AsyncSession
"""What ``connection=`` accepts."""


def sql_store(store: JobStore) -> Store:
    """The queue's store, when it is a SQL one (a caller's transaction needs a real
    database: the memory backend of ``aqueue.testing`` has none)."""
    if not isinstance(store, Store):
        raise ConfigurationError(
            "connection= needs a SQL store (MySQL/MariaDB, SQLite, PostgreSQL): this "
            f"queue's store is {type(store).__name__}"
        )
    return store


async def connection_of(store: Store, caller: object) -> AsyncConnection:
    """The caller's connection (a session's, begun as its autobegin would), checked to
    reach the same kind of database as the store."""
    if isinstance(caller, AsyncSession):
        conn = await caller.connection()
    elif isinstance(caller, AsyncConnection):
        conn = caller
    else:
        raise ConfigurationError(
            "connection= takes a SQLAlchemy AsyncConnection or AsyncSession, got "
            f"{type(caller).__name__}"
        )
    ours, theirs = store.engine.dialect.name, conn.dialect.name
    if ours != theirs:
        raise ConfigurationError(
            f"connection= is a {theirs} connection but the queue's jobs are in {ours}"
        )
    return conn


async def _run(conn: AsyncConnection, sql: str, params: Sequence[Any]) -> CursorResult[Any]:
    """One statement of the store's dialect on the caller's connection."""
    args: tuple[Any, ...] | None = tuple(params)
    if conn.dialect.name == "mysql" and mysqltext.has_long_text(params):
        raw = await conn.get_raw_connection()
        sql, args = mysqltext.statement(raw.driver_connection, sql, params)
    if args is None:
        # rendered already: the driver must not format it again (a % in the text)
        return await conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
    return await conn.exec_driver_sql(sql, args)


async def _rows(conn: AsyncConnection, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
    result = await _run(conn, sql, params)
    return [tuple(r) for r in result.fetchall()]


async def insert_on(
    store: Store, conn: AsyncConnection, jobs: Sequence[NewJob], now: int
) -> list[str | BaseException]:
    """Insert ``jobs`` in the caller's transaction: one statement, plus one read when a
    job has an explicit id or a unique key (which job stands). Per job: its id, the id
    of the job holding its unique key, or a ``StoreError`` (its id is taken)."""
    tagged = [j for j in jobs if j.tags]
    if tagged:  # the tags column too, then the tag rows, in the same transaction
        sql, params = store.tags.insert_jobs(jobs, now, careful=True)
    else:
        sql, params = store.sql.insert(jobs, now, careful=True)
    await _run(conn, sql, params)
    if tagged:
        stored = {r[0] for r in await _rows(conn, *store.tags.present([j.id for j in tagged]))}
        rows = [(j.queue, t, j.id) for j in tagged if j.id in stored for t in j.tags]
        for k in range(0, len(rows), TAGS_PER_INSERT):
            await _run(conn, *store.tags.insert_tags(rows[k : k + TAGS_PER_INSERT]))
    if not any(j.explicit_id or j.unique_key for j in jobs):
        return [j.id for j in jobs]
    present = {r[0] for r in await _rows(conn, *store.sql.inserted([j.id for j in jobs]))}
    out: list[str | BaseException] = []
    for j in jobs:
        if j.id in present:
            out.append(j.id)
            continue
        if j.unique_key:
            found = await _rows(conn, *store.sql.unique_holder(j.queue, j.unique_key))
            if found:
                out.append(str(found[0][0]))
                continue
        out.append(StoreError(f"job {j.id} was not stored (conflict)"))
    return out


async def get_job_on(store: Store, conn: AsyncConnection, job_id: str) -> JobRecord | None:
    """A job's row as the caller's transaction sees it (its own uncommitted writes)."""
    rows = await _rows(conn, *store.sql.get_job(job_id))
    return record(rows[0]) if rows else None


async def cancel_on(
    store: Store, conn: AsyncConnection, job_id: str, reason: str, now: int
) -> bool:
    """Cancel in the caller's transaction: it takes effect when the caller commits."""
    result = await _run(conn, *store.sql.cancel(job_id, reason, now))
    return bool(result.rowcount > 0)
