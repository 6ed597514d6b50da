"""The systems under benchmark: how each one's worker is started, where its keys live, and
how what a run created is removed afterwards (only that: keys that were in a DB before the
run are kept)."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

BENCH_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent


@dataclass(frozen=True)
class System:
    name: str
    module: str
    """The ``app_*`` module: the worker entry point and the ``Producer`` class."""
    modules: tuple[str, ...]
    """Top-level modules it needs."""
    cli: tuple[str, ...]
    """The documented worker command (``{c}``: concurrency; first item: executable name)."""
    redis_db_offset: int | None
    """Its Redis DB is ``first_db + offset``; None: the embedded Redis."""
    batch_api: str | None = None
    """The public call enqueueing many jobs at once, if the system has one."""
    sql: str | None = None
    """``mysql``, ``postgresql`` or ``sqlite`` for the aqueue rows."""

    @property
    def server_sql(self) -> bool:
        """An aqueue row on a SQL server (the shared Redis, a table per run)."""
        return self.sql in ("mysql", "postgresql")

    @property
    def is_aqueue(self) -> bool:
        return self.sql is not None

    def worker_argv(self, concurrency: int) -> list[str]:
        exe, *rest = self.cli
        if exe == "python":
            argv = [sys.executable]
        else:
            found = BIN_DIR / exe
            argv = [str(found if found.exists() else shutil.which(exe) or exe)]
        return argv + [a.replace("{c}", str(concurrency)) for a in rest]


AQUEUE_CLI = ("python", "-m", "aqueue", "run", "app_aqueue:queue", "--concurrency", "{c}")
SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            "aqueue",
            "app_aqueue",
            ("aqueue",),
            (*AQUEUE_CLI, "--log-level", "warning"),
            0,
            batch_api="Queue.enqueue_many",
            sql="mysql",
        ),
        System(
            "aqueue-postgres",
            "app_aqueue",
            ("aqueue", "asyncpg"),
            (*AQUEUE_CLI, "--log-level", "warning"),
            0,  # beside aqueue (MariaDB): each run has its own key prefix
            batch_api="Queue.enqueue_many",
            sql="postgresql",
        ),
        System(
            "aqueue-embedded",
            "app_aqueue",
            ("aqueue",),
            (*AQUEUE_CLI, "--log-level", "warning"),
            None,
            batch_api="Queue.enqueue_many",
            sql="sqlite",
        ),
        System(
            "arq",
            "app_arq",
            ("arq",),
            ("arq", "app_arq.WorkerSettings", "--custom-log-dict", "app_arq.LOG_CONFIG"),
            1,
        ),
        System("saq", "app_saq", ("saq",), ("saq", "app_saq.settings"), 2),
        System(
            "taskiq",
            "app_taskiq",
            ("taskiq", "taskiq_redis"),
            (
                "taskiq",
                "worker",
                "app_taskiq:broker",
                "--workers",
                "1",
                "--max-async-tasks",
                "{c}",
                "--log-level",
                "WARNING",
            ),
            3,
        ),
        System(
            "streaq",
            "app_streaq",
            ("streaq",),
            ("streaq", "run", "app_streaq:worker"),
            4,
            batch_api="Worker.enqueue_many",
        ),
    )
}


def select(only: str | None) -> list[System]:
    """``--only aqueue,arq``: ``aqueue`` means every aqueue row, ``aqueue-mariadb`` only
    the MariaDB one."""
    if not only:
        return list(SYSTEMS.values())
    names = [n.strip() for n in only.split(",") if n.strip()]
    chosen: list[System] = []
    for n in names:
        matches = [
            s
            for s in SYSTEMS.values()
            if s.name == n
            or (n == "aqueue" and s.is_aqueue)
            or (n == "aqueue-mariadb" and s.name == "aqueue")
        ]
        if not matches:
            raise SystemExit(f"unknown system {n!r} (known: {', '.join(SYSTEMS)})")
        chosen += [s for s in matches if s not in chosen]
    return chosen


@dataclass
class Settings:
    redis: str
    harness_db: int
    first_db: int
    database: str
    postgres: str
    home: Path
    concurrency: int

    def redis_url(self, db: int) -> str:
        return f"{self.redis.rstrip('/')}/{db}"


@dataclass
class Namespace:
    """What one run of one workload owns: its harness keys, its system's keys, and for
    aqueue its table."""

    system: System
    settings: Settings
    target: int
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    kept: set[bytes] = field(default_factory=set)

    @property
    def table(self) -> str:
        return f"bench_{self.run}"

    @property
    def db(self) -> int | None:
        off = self.system.redis_db_offset
        return None if off is None else self.settings.first_db + off

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AQUEUE_", "BENCH_"))}
        for name in ("BENCH_AQ_OBSERVE", "BENCH_AQ_COMPRESS_OVER", "BENCH_AQ_COMPRESSION"):
            if value := os.environ.get(name):
                env[name] = value
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p
        )
        env.update(
            BENCH_HARNESS_REDIS=s.redis_url(s.harness_db),
            BENCH_RUN=self.run,
            BENCH_TARGET=str(self.target),
            BENCH_CONCURRENCY=str(s.concurrency),
        )
        if self.db is not None:
            env["BENCH_SYSTEM_REDIS"] = s.redis_url(self.db)
        if self.system.is_aqueue:
            env.update(BENCH_AQ_TABLE=self.table, BENCH_AQ_PREFIX=self.aqueue_prefix)
            if self.system.server_sql:
                url = s.postgres if self.system.sql == "postgresql" else s.database
                env.update(BENCH_AQ_REDIS=env["BENCH_SYSTEM_REDIS"], BENCH_AQ_DATABASE=url)
            else:
                env["AQUEUE_HOME"] = str(s.home)
        return env

    def aqueue_queue(self) -> Any:
        """A handle on this run's aqueue queue, for the harness's own reads (job counts)."""
        from aqueue import Queue

        env = self.env()
        return Queue(
            "bench",
            redis_url=env.get("BENCH_AQ_REDIS"),
            database_url=env.get("BENCH_AQ_DATABASE"),
            table=self.table,
            key_prefix=env["BENCH_AQ_PREFIX"],
            init_db=False,
            home=str(self.settings.home),
        )

    @property
    def app_table(self) -> str:
        """The application's own table of the transactional-enqueue variant of W1."""
        return f"{self.table}_app"

    @property
    def aqueue_prefix(self) -> str:
        return f"b{self.run}"

    async def open(self, r: Redis) -> None:
        """Remember the keys already in a peer's DB: cleanup leaves them alone. (aqueue's
        keys all start with this run's own prefix: cleanup deletes just those, so that
        two aqueue runs can share a DB.)"""
        if self.db is not None and not self.system.is_aqueue:
            c = await _db_client(r, self.db)
            try:
                self.kept = {k async for k in c.scan_iter(count=1000)}
            finally:
                await c.aclose()

    async def close(self, r: Redis, sql_engine: Any) -> None:
        await _delete(r, [k async for k in r.scan_iter(match=f"bench:{self.run}:*", count=1000)])
        if self.db is not None:
            c = await _db_client(r, self.db)
            try:
                if self.system.is_aqueue:
                    keys = [k async for k in c.scan_iter(match=f"{{{self.aqueue_prefix}:*")]
                else:
                    keys = [k async for k in c.scan_iter(count=1000) if k not in self.kept]
                await _delete(c, keys)
            finally:
                await c.aclose()
        if self.system.sql == "sqlite":
            # the embedded Redis is private to this benchmark, but its keys go too
            q = self.aqueue_queue()
            try:
                await q.purge()
            except Exception as exc:  # e.g. the run failed before the table existed
                print(f"  (cleanup: purge failed: {exc!r})", file=sys.stderr)
            finally:
                await q.close()
        if sql_engine is not None and self.system.is_aqueue:
            await drop_tables(sql_engine, [self.app_table, self.table, f"{self.table}_meta"])


async def _db_client(r: Redis, db: int) -> Redis:
    kw = r.connection_pool.connection_kwargs
    return Redis(host=kw.get("host", "127.0.0.1"), port=kw.get("port", 6379), db=db)


async def _delete(r: Redis, keys: Sequence[bytes]) -> None:
    for i in range(0, len(keys), 500):
        await r.delete(*keys[i : i + 500])


async def drop_tables(engine: Any, tables: Sequence[str]) -> None:
    # MySQL answers DROP TABLE IF EXISTS of a missing table with a note, which its driver
    # logs as a warning, printed amid the results.
    driver_log = logging.getLogger("asyncmy")
    level = driver_log.level
    driver_log.setLevel(logging.ERROR)
    try:
        async with engine.begin() as conn:
            for t in tables:
                q = engine.dialect.identifier_preparer.quote(t)
                await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q}")
    finally:
        driver_log.setLevel(level)


def check_available(system: System) -> str | None:
    """None when the system's packages and its worker command are installed; else why
    not. (Whether it then runs here shows in its worker's log.)"""
    for module in system.modules:
        if importlib.util.find_spec(module) is None:
            return f"{module!r} is not installed"
    argv = system.worker_argv(1)
    if not Path(argv[0]).exists():
        return f"worker command {system.cli[0]!r} not found"
    return None
