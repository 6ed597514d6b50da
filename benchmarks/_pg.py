"""PostgreSQL for the aqueue (PostgreSQL) row: its settings, its CPU, and the transactions
per job from ``pg_stat_database``.

``pg_stat_statements`` would count statements, but it needs ``shared_preload_libraries``
(a server restart), so the counters read here are the database's transactions
(``xact_commit`` + ``xact_rollback``): every autocommitted statement is one, a
``BEGIN`` … ``COMMIT`` block is one, and so is asyncpg's prepare of a statement text its
connection has not seen (one Parse/Describe round trip).

A backend does not publish its counts at once: it flushes them when it goes idle at most
once a second, else after up to 10 s (PostgreSQL 15's ``PGSTAT_IDLE_INTERVAL``), and
always when it exits. So the harness counts on one connection of its own that it flushes
on demand (``pg_stat_force_next_flush()``), and the window ends once the worker has
exited and its backends are gone (their last counts published).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "full_page_writes", "wal_level")


async def info(engine: Any) -> dict[str, Any]:
    async with engine.connect() as conn:
        version = (await conn.exec_driver_sql("SHOW server_version")).scalar()
        rows = (
            await conn.exec_driver_sql(
                "SELECT name, setting FROM pg_settings WHERE name IN ("
                + ", ".join(f"'{n}'" for n in SETTINGS)
                + ")"
            )
        ).fetchall()
        data_dir = (await conn.exec_driver_sql("SHOW data_directory")).scalar()
    out: dict[str, Any] = {"version": version, **{str(k): str(v) for k, v in rows}}
    with contextlib.suppress(OSError, ValueError, IndexError):  # the server on another host
        out["postmaster_pid"] = int(Path(str(data_dir), "postmaster.pid").read_text().split()[0])
    return out


def reaped_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of the backends the postmaster has reaped (``cutime``, ``cstime``): with
    the CPU of the server's live processes, a backend that lived inside the window counts
    even though it is gone from /proc. Other clients' backends count too."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = Path(f"/proc/{postmaster}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def client_ports(pids: Sequence[int], server_port: int) -> list[int]:
    """The local TCP ports of the processes' connections to ``server_port``."""
    inodes: set[str] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes.add(link[8:-1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                f = line.split()
                if f[9] in inodes and int(f[2].rsplit(":", 1)[1], 16) == server_port:
                    ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


class Counters:
    """One connection of the harness's own (autocommit: one transaction per statement)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.conn: Any = None

    async def __aenter__(self) -> Counters:
        self.conn = await self.engine.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()

    async def warm_up(self, table: str) -> None:
        """Prepare every statement text now: a first use costs a transaction more."""
        await self.read()
        await self.done(table)
        await self.backends([0])
        await self.wait_gone([0])

    async def read(self) -> dict[str, int]:
        """The database's counters, this connection's own transactions included (2 per
        read: the flush request and the read itself, counted at the next read)."""
        await self.conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        row = (
            await self.conn.exec_driver_sql(
                f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        ).one()
        return {k: int(v) for k, v in zip(COUNTERS, row, strict=True)}

    async def done(self, table: str) -> int:
        """Rows ``done`` in the run's table (one transaction)."""
        q = self.engine.dialect.identifier_preparer.quote(table)
        got = await self.conn.exec_driver_sql(f"SELECT count(*) FROM {q} WHERE status = 'done'")
        return int(got.scalar())

    async def backends(self, ports: Sequence[int]) -> list[int]:
        """The backend pids serving these client ports."""
        if not ports:
            return []
        got = await self.conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])", (list(ports),)
        )
        return [int(r[0]) for r in got.fetchall()]

    async def wait_gone(self, pids: Sequence[int], timeout: float = 15.0) -> int:
        """Wait until these backends have exited (their counts published); the number of
        polls (transactions of ours)."""
        polls = 0
        deadline = time.monotonic() + timeout
        while pids:
            got = await self.conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", (list(pids),)
            )
            polls += 1
            if not got.scalar() or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        return polls


def per_job(
    c0: dict[str, int],
    c1: dict[str, int],
    bg: dict[str, float],
    ours: int,
    n: int,
    seconds: float,
) -> dict[str, Any]:
    """Counter deltas per job, less the harness's own ``ours`` transactions."""
    delta = {k: c1[k] - c0[k] for k in COUNTERS}
    delta["xact_commit"] -= ours
    delta["transactions"] = delta["xact_commit"] + delta["xact_rollback"]
    return {
        "per_job": {k: v / n for k, v in delta.items()},
        "raw_delta": delta,
        "window_s": seconds,
        "background_per_s": bg,
        "background_estimate_per_job": {k: bg[k] * seconds / n for k in bg},
    }


async def background(counters: Counters, window: float) -> dict[str, float]:
    """Counts per second on the database while nothing of ours runs (other clients'; as
    they publish up to 10 s late, a smoothed figure)."""
    a = await counters.read()
    t0 = time.monotonic()
    await asyncio.sleep(window)
    b = await counters.read()
    dt = time.monotonic() - t0
    out = {k: (b[k] - a[k]) / dt for k in COUNTERS}
    out["xact_commit"] -= 2 / dt  # our own flush request and read
    out["transactions"] = out["xact_commit"] + out["xact_rollback"]
    return out
