"""What the results depend on: the machine, the versions, the durability settings."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

DISTS = (
    "aqueue",
    "arq",
    "saq",
    "taskiq",
    "taskiq-redis",
    "streaq",
    "redis",
    "hiredis",
    "coredis",
    "sqlalchemy",
    "asyncmy",
    "asyncpg",
    "aiosqlite",
    "uvloop",
    "anyio",
)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem = round(int(first.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": os.getloadavg(),
        "niceness": os.nice(0),
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for d in DISTS:
        try:
            out[d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            out[d] = None
    return out


async def redis_info(r: Redis) -> dict[str, Any]:
    info = await r.info("server")
    out: dict[str, Any] = {"version": info.get("redis_version")}
    for name in ("appendonly", "appendfsync", "save", "maxmemory-policy"):
        try:
            out[name] = (await r.config_get(name)).get(name)
        except Exception as exc:  # CONFIG may be disabled
            out[name] = f"unavailable ({type(exc).__name__})"
    return out


async def mysql_info(engine: Any) -> dict[str, Any]:
    names = ("innodb_flush_log_at_trx_commit", "sync_binlog", "log_bin", "innodb_doublewrite")
    async with engine.connect() as conn:
        version = (await conn.exec_driver_sql("SELECT VERSION()")).scalar()
        rows = (
            await conn.exec_driver_sql(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ("
                + ", ".join(f"'{n}'" for n in names)
                + ")"
            )
        ).fetchall()
    return {"version": version, **{str(k): str(v) for k, v in rows}}


async def commit_latencies(engine: Any, n: int = 300) -> list[float]:
    """Single-row durable commits on MariaDB (or PostgreSQL), one at a time and 2 ms
    apart: the floor under each enqueue (and claim) of aqueue right now, which moves with
    the disk's fsync latency (shared with other tenants). Their times in ms, ascending."""
    table = f"bench_commit_probe_{os.getpid()}"
    lat: list[float] = []
    async with engine.connect() as conn:
        serial = "SERIAL" if engine.dialect.name == "postgresql" else "INT AUTO_INCREMENT"
        await conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {table} (id {serial} PRIMARY KEY, v INT)"
        )
        await conn.commit()
        try:
            for i in range(n):
                t = time.perf_counter()
                await conn.exec_driver_sql(f"INSERT INTO {table} (v) VALUES ({i})")
                await conn.commit()
                lat.append((time.perf_counter() - t) * 1e3)
                await asyncio.sleep(0.002)
        finally:
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            await conn.commit()
    return sorted(lat)


async def sqlite_info(home: Path) -> dict[str, Any]:
    """The PRAGMAs aqueue's own SQLite connections run with (read through its store, whose
    connect hook sets them), and the embedded Redis's version and persistence."""
    out: dict[str, Any] = {}
    try:
        from aqueue import _embedded
        from aqueue._store.store import Store

        store = Store(_embedded.sqlite_url(home))
        try:
            async with store.engine.connect() as conn:
                sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
                journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        finally:
            await store.close()
        out["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync)
        out["journal_mode"] = journal
        binary = _embedded.find_redis_server()
        if binary:
            v = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
            out["embedded_redis_binary"] = binary
            out["embedded_redis_version"] = v.stdout.strip()
    except Exception as exc:  # private aqueue API: record why, do not fail the run
        out["error"] = repr(exc)
    return out


def source_state(repo: Path) -> dict[str, Any]:
    """The commit of the aqueue tree measured (installed editable, so a commit landing
    during a run changes what later workers run: compare start and end)."""

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
            )
        except OSError:
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    status = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_dirty": bool(status)}
