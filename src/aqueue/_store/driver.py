"""Statements on one driver connection, whatever the driver.

The three drivers differ in how a statement goes out: asyncpg takes its parameters as
arguments and answers with a status string (``UPDATE 3``); aiosqlite runs statements
through the connection's ``execute``; asyncmy through a cursor, with long text quoted by
aqueue (``mysqltext``). :class:`DriverConn` hides them behind ``execute``, ``fetch`` and
``commit``, for the executor's statements, its open claims and its transactions alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import StoreError
from . import mysqltext


def rowcount(status: str) -> int:
    """The row count of an asyncpg command status (``UPDATE 3``, ``INSERT 0 5``)."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class DriverConn:
    """One raw driver connection (the statements of a transaction, when one is open on
    it: see ``Executor.transaction``)."""

    __slots__ = ("_pg", "_raw", "_sqlite")

    def __init__(self, raw: Any, *, asyncpg: bool, aiosqlite: bool) -> None:
        self._raw, self._pg, self._sqlite = raw, asyncpg, aiosqlite

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return its row count."""
        if self._pg:
            return rowcount(await self._raw.execute(sql, *params))
        if self._sqlite:
            async with self._raw.execute(sql, tuple(params)) as cur:
                return int(cur.rowcount)
        async with self._raw.cursor() as cur:
            await cur.execute(*mysqltext.statement(self._raw, sql, params))
            return int(cur.rowcount)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Run one query; return its rows."""
        if self._pg:
            return [tuple(r) for r in await self._raw.fetch(sql, *params)]
        if self._sqlite:
            async with self._raw.execute(sql, tuple(params)) as cur:
                return [tuple(r) for r in await cur.fetchall()]
        async with self._raw.cursor() as cur:
            await cur.execute(*mysqltext.statement(self._raw, sql, params))
            return [tuple(r) for r in await cur.fetchall()]

    async def commit(self) -> None:
        """Commit the transaction open on this connection. On PostgreSQL, a transaction
        that an error aborted answers ``COMMIT`` with ``ROLLBACK``: that is an error."""
        if not self._pg:
            await self._raw.commit()
            return
        status = await self._raw.execute("COMMIT")
        if status != "COMMIT":
            raise StoreError(f"the transaction was rolled back ({status})")
