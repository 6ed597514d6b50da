"""Driver connections held open between statements.

Every hot statement goes to the driver's connection directly (see ``Executor``).
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

A connection the server closed (a restart, ``KILL``, ``wait_timeout``) is never handed
out: the driver already saw the end of its stream, and :func:`alive` reads that without a
round trip. Sending a statement on it would fail with "server has gone away" and cost its
caller an error for a statement that never ran. A server that closes one connection has
usually closed them all (a restart), so finding one dead checks every idle sibling too
(:meth:`HeldPool.sweep`).

A pool made with ``autocommit=False`` (the open claims') turns autocommit off on each
MySQL connection once, so that a claim's ``UPDATE`` opens its transaction itself: no
``BEGIN`` round trip between a runner taking a job and starting it (PostgreSQL's claims
send ``BEGIN``: asyncpg has no such mode). Such a connection
never goes back to the engine's pool, where an autocommit connection is expected: when
this pool lets go of it, it is closed for good (invalidated).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


def alive(raw: Any) -> bool:
    """False when the driver connection's stream is known to be closed: the server ended
    it (EOF) or the socket failed, so nothing written to it can reach the server. Free:
    asyncmy's own pool reads the same flag, asyncpg has ``is_closed()``; a driver without
    either (aiosqlite) is alive."""
    is_closed = getattr(raw, "is_closed", None)  # asyncpg's
    if is_closed is not None:
        return not is_closed()
    return not getattr(raw, "_stream_broken", False)


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

    @property
    def idle(self) -> tuple[Held, ...]:
        """The connections held for the next statements, last used last."""
        return tuple(self._idle)

    async def take(self) -> Held:
        while self._idle:
            held = self._idle.pop()
            if not alive(held.raw):
                await self.discard(held)
                await self.sweep()
                continue
            if time.monotonic() - held.born < self._recycle:
                return held
            await self._let_go(held)
        conn = await self._engine.connect()
        try:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            if not self._autocommit and hasattr(raw, "autocommit"):
                await raw.autocommit(False)  # asyncpg has no such mode: BEGIN is sent
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

    async def sweep(self) -> None:
        """One connection was found dead: discard every idle one that is dead too. The
        event loop first gets one turn, so that the end of stream of siblings closed at
        the same moment (a restart closes all at once) has been read."""
        await asyncio.sleep(0)
        dead = [h for h in self._idle if not alive(h.raw)]
        if not dead:
            return
        self._idle = [h for h in self._idle if alive(h.raw)]
        for held in dead:
            await self.discard(held)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for held in idle:
            await self._let_go(held)
