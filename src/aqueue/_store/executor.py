"""Running the store's statements: one async engine, driver connections held between
statements, retries, and the mapping of database errors to ``StoreError`` (and, for an
INSERT, ``EnqueueOutcomeUnknownError``) at the store's boundary.

Statements run in autocommit mode: each one is its own durable transaction, so a batch of
N jobs costs one statement (no BEGIN/COMMIT round trips). Deadlocks and lock-wait
timeouts (MySQL 1213/1205) and SQLite's "database is locked" are retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .._errors import ConfigurationError, EnqueueOutcomeUnknownError, StoreError
from .conns import Held, HeldPool, alive
from .driver import DriverConn
from .errors import (
    NOT_CONNECTED,
    connect_problem,
    connection_broken,
    db_error,
    is_definite,
    is_retryable,
    not_sent,
    short,
)
from .sql import Statement
from .values import Commit

log = logging.getLogger("aqueue.store")
T = TypeVar("T")


def parse_url(url: str) -> tuple[sa.URL, str]:
    """The engine URL for ``url`` (its async driver filled in) and its backend name."""
    try:
        sa_url = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL: {exc}") from exc
    backend = sa_url.get_backend_name()
    if backend == "postgres":  # the scheme libpq and most hosting providers write
        sa_url, backend = sa_url.set(drivername="postgresql"), "postgresql"
    if backend not in ("mysql", "mariadb", "sqlite", "postgresql"):
        raise ConfigurationError(
            f"unsupported database {backend!r}: use mysql+asyncmy://..., "
            "postgresql+asyncpg://... or sqlite+aiosqlite:///path"
        )
    driver = _DRIVERS[backend]
    if sa_url.drivername != f"{backend}+{driver}":
        if "+" in sa_url.drivername:
            raise ConfigurationError(
                f"unsupported driver {sa_url.drivername!r}: aqueue runs {backend} "
                f"through {driver} ({backend}+{driver}://...)"
            )
        sa_url = sa_url.set(drivername=f"{backend}+{driver}")
    return sa_url, backend


_DRIVERS = {
    "mysql": "asyncmy",
    "mariadb": "asyncmy",
    "sqlite": "aiosqlite",
    "postgresql": "asyncpg",
}
_EXTRAS = {"asyncmy": "aqueue[mysql]", "asyncpg": "aqueue[postgres]", "aiosqlite": "aqueue"}


def insert_failure(exc: BaseException, first_id: str, n: int) -> BaseException:
    """What a database error ``exc`` from writing ``n`` new jobs (the first ``first_id``)
    means to the producer: ``StoreError`` when the write certainly did not take effect,
    ``EnqueueOutcomeUnknownError`` when it may have (a lost reply, a lost COMMIT: the
    caller must not simply enqueue again); a cancellation stays one."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return asyncio.CancelledError()
    if is_definite(exc):
        return StoreError(f"enqueue failed: {type(exc).__name__}: {short(exc)}")
    return EnqueueOutcomeUnknownError(
        first_id, f"enqueue outcome unknown ({short(exc)}) for {n} job(s)"
    )


class Executor:
    """Runs SQL text with positional parameters on held driver connections."""

    def __init__(
        self,
        url: sa.URL,
        session: Sequence[str],
        *,
        pool_size: int,
        single_writer: bool,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        # aiosqlite's connections run statements through ``execute`` (no async cursor);
        # asyncpg's take their parameters as arguments and report a status string.
        self._aiosqlite = url.get_backend_name() == "sqlite"
        self._asyncpg = url.get_backend_name() == "postgresql"
        # Autocommit: each statement is its own transaction, so there is nothing to roll
        # back when a connection returns to the pool.
        kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
        if not self._aiosqlite:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)
        if connect_args:
            kwargs["connect_args"] = connect_args
        try:
            self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        except ImportError as exc:
            driver = url.drivername.partition("+")[2]
            raise ConfigurationError(
                f"the driver for {url.drivername} is not installed ({exc}): install "
                f"{_EXTRAS.get(driver, driver)}"
            ) from exc
        self._write_lock = asyncio.Lock() if single_writer else None
        self._install_connect_hooks(session)
        self.conns = HeldPool(self.engine, keep=pool_size if not self._aiosqlite else 5)
        # the open claims' (MySQL): autocommit off, so a claim needs no BEGIN
        self.claim_conns = HeldPool(self.engine, keep=4, autocommit=False)

    def _install_connect_hooks(self, session: Sequence[str]) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            for statement in session:
                cur.execute(statement)
            cur.close()

        if not self._aiosqlite:
            # The engine's pool hands out a connection the server closed (after a restart,
            # all of them) as readily as a live one. pool_pre_ping would find out with a
            # round trip per checkout; the driver already knows, for free: such a
            # connection is replaced by a new one instead.
            @event.listens_for(sync_engine, "checkout")
            def _mysql_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
                if not alive(dbapi_conn.driver_connection):
                    raise sa.exc.DisconnectionError("connection closed by the server")

    async def run(self, what: str, fn: Callable[[], Awaitable[T]], attempts: int = 6) -> T:
        """``fn``, tried again on a retryable error or one raised before the statement was
        sent; any other database error is raised as ``StoreError("<what> failed: ...")``."""
        delay = 0.01
        for i in range(attempts):
            try:
                return await fn()
            except Exception as exc:
                if not db_error(exc):
                    raise
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError() from exc  # never swallow a cancellation
                if i < attempts - 1 and (is_retryable(exc) or not_sent(exc)):
                    log.debug("%s: retrying after %s", what, short(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                problem = connect_problem(exc)
                if problem is not None:
                    url = self.engine.url.render_as_string(hide_password=True)
                    raise StoreError(
                        f"the database at {url} {problem} (while {what}): "
                        f"{type(exc).__name__}: {short(exc)}"
                    ) from exc
                raise StoreError(f"{what} failed: {type(exc).__name__}: {short(exc)}") from exc
        raise AssertionError("unreachable")

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement; return the matched row count (driver errors raw: see
        :meth:`run`)."""
        if self._write_lock is not None:
            async with self._write_lock:
                return await self._execute_now(sql, params)
        return await self._execute_now(sql, params)

    async def insert(self, sql: str, params: Sequence[Any], first_id: str, n: int) -> None:
        """Run an INSERT of ``n`` jobs once: ``StoreError`` when it certainly did not take
        effect, ``EnqueueOutcomeUnknownError`` (naming ``first_id``) when it may have."""
        try:
            await self.execute(sql, params)
        except Exception as exc:
            if not db_error(exc):
                raise
            raise insert_failure(exc, first_id, n) from exc

    async def update_open(
        self, sql: str, params: Sequence[Any], ids: Sequence[str], won: Callable[[], Statement]
    ) -> tuple[set[str], Commit | None]:
        """Run an UPDATE of the rows ``ids`` in a transaction left open (MySQL: on a
        connection with autocommit off, the statement opens it, no BEGIN round trip;
        PostgreSQL: after a ``BEGIN``). Returns the ids it changed (all, none, or those
        the query ``won()`` reads in the same transaction) and the commit to await
        (``None``: nothing changed, committed already). Driver errors raw: see
        :meth:`run`."""
        conns = self.claim_conns
        held = await conns.take()
        conn = self._on(held.raw)
        try:
            if self._asyncpg:
                await conn.execute("BEGIN")
            count = await conn.execute(sql, params)
            if count == len(ids):
                changed = set(ids)
            elif count == 0:
                changed = set()
            else:
                changed = {r[0] for r in await conn.fetch(*won())}
            if not changed:
                await conn.commit()  # nothing changed: no log flush to wait for
        except BaseException:
            await conns.discard(held)  # the server rolls the transaction back
            raise
        if not changed:
            await conns.give(held)
            return changed, None

        async def commit() -> None:
            try:
                await self.run("committing claims", conn.commit, attempts=1)
            except BaseException:
                await conns.discard(held)
                raise
            await conns.give(held)

        return changed, commit

    def _on(self, raw: Any) -> DriverConn:
        return DriverConn(raw, asyncpg=self._asyncpg, aiosqlite=self._aiosqlite)

    async def transaction(self, fn: Callable[[DriverConn], Awaitable[T]]) -> T:
        """``fn`` inside one transaction (``BEGIN`` ... ``COMMIT``; SQLite: ``BEGIN
        IMMEDIATE`` under the write lock) on a held connection; an error discards the
        connection, so the server rolls the transaction back. Driver errors raw: see
        :meth:`run` (which may run ``fn`` again in a new transaction)."""
        if self._write_lock is not None:
            async with self._write_lock:
                return await self._transaction(fn)
        return await self._transaction(fn)

    async def _transaction(self, fn: Callable[[DriverConn], Awaitable[T]]) -> T:
        # MySQL: a connection with autocommit off (the open claims'), whose first
        # statement opens the transaction: no BEGIN round trip
        mysql = not (self._asyncpg or self._aiosqlite)
        conns = self.claim_conns if mysql else self.conns
        held = await conns.take()
        tx = self._on(held.raw)
        try:
            if not mysql:
                await tx.execute("BEGIN IMMEDIATE" if self._aiosqlite else "BEGIN")
            out = await fn(tx)
            await tx.execute("COMMIT")
        except BaseException:
            await conns.discard(held)
            raise
        await conns.give(held)
        return out

    # Statements go to the driver's connection directly: through SQLAlchemy's Connection
    # every statement would also cost a ROLLBACK round trip when the connection is given
    # back (autobegin), even in autocommit mode. The connections stay checked out between
    # statements (``HeldPool``); a broken one is invalidated so it is not used again.

    async def _execute_now(self, sql: str, params: Sequence[Any]) -> int:
        return await self._on_held(lambda raw: self._on(raw).execute(sql, params))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one query; return its rows (driver errors raw: see :meth:`run`)."""
        return await self._on_held(lambda raw: self._on(raw).fetch(sql, params))

    async def fetch_write(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one write statement that returns rows (``UPDATE ... RETURNING``): as
        :meth:`fetch`, under the write lock where there is one (SQLite)."""
        if self._write_lock is not None:
            async with self._write_lock:
                return await self.fetch(sql, params)
        return await self.fetch(sql, params)

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
                exc.add_note(NOT_CONNECTED)
                raise
            try:
                out = await run(held.raw)
            except BaseException as exc:
                await self._after_error(held, exc)
                if i < sends - 1 and not_sent(exc):
                    log.debug("statement not sent (%s): on another connection", short(exc))
                    continue
                raise
            await self.conns.give(held)
            return out
        raise AssertionError("unreachable")

    async def _after_error(self, held: Held, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            await self.conns.discard(held)
        elif connection_broken(exc):
            await self.conns.discard(held)
            await self.conns.sweep()  # the server may have closed its siblings too
        else:  # the server refused the statement: the connection is fine
            await self.conns.give(held)

    async def close(self) -> None:
        await self.conns.close()
        await self.claim_conns.close()
        await self.engine.dispose()
