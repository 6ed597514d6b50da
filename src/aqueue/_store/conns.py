"""Driver connections held open between statements.

Every hot statement goes to the driver's connection directly (see ``Store._exec_now``).
Checking that connection out of SQLAlchemy's pool and giving it back around each
statement cost ~120 µs of CPU and ~130 µs of wall time on the machine of
``benchmarks/`` (the greenlet hop, the pool's events, the ``AsyncConnection`` wrapper):
as much as the statement itself, and paid once per job where nothing is batched (one job
at a time: the producer's ``INSERT``, the runner's claim and finish). So the store keeps
up to ``keep`` connections checked out of the engine and hands their driver connection to
each statement in turn, last used first.

The engine's pool still bounds how many connections exist (a held connection counts as
checked out), and still opens and closes them. A connection older than ``recycle`` is
closed instead of reused, as ``pool_recycle`` does; one whose statement failed with a
broken connection or was cancelled is invalidated by the caller (:meth:`HeldPool.discard`).

A pool made with ``autocommit=False`` (the open claims', MySQL only) turns autocommit off
on each connection once, so that a claim's ``UPDATE`` opens its transaction itself: no
``BEGIN`` round trip between a runner taking a job and starting it. Such a connection
never goes back to the engine's pool, where an autocommit connection is expected: when
this pool lets go of it, it is closed for good (invalidated).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Held:
    """One connection checked out of the engine: its SQLAlchemy wrapper (to give it back
    or invalidate it) and the driver's connection (to run statements on)."""

    __slots__ = ("born", "conn", "raw")

    def __init__(self, conn: AsyncConnection, raw: Any, born: float) -> None:
        self.conn = conn
        self.raw = raw
        self.born = born


class HeldPool:
    def __init__(
        self, engine: AsyncEngine, *, keep: int, recycle: float = 3600.0, autocommit: bool = True
    ) -> None:
        self._engine = engine
        self._keep = keep
        self._recycle = recycle
        self._autocommit = autocommit
        self._idle: list[Held] = []
        self._closed = False

    async def take(self) -> Held:
        while self._idle:
            held = self._idle.pop()
            if time.monotonic() - held.born < self._recycle:
                return held
            await self._let_go(held)
        conn = await self._engine.connect()
        try:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            if not self._autocommit:
                await raw.autocommit(False)
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        return Held(conn, raw, time.monotonic())

    async def _let_go(self, held: Held) -> None:
        if self._autocommit:
            await held.conn.close()  # back to the engine's pool
        else:
            await self.discard(held)

    async def give(self, held: Held) -> None:
        """Back for the next statement (a connection in a transaction must not come
        back: commit it, roll it back or discard it first)."""
        if not self._closed and len(self._idle) < self._keep:
            self._idle.append(held)
        else:
            await self._let_go(held)

    async def discard(self, held: Held) -> None:
        """Broken, or its state unknown (a statement cancelled midway): never reused."""
        try:
            await held.conn.invalidate()
        finally:
            await held.conn.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for held in idle:
            await self._let_go(held)
