"""What the databases write for a job with a large argument (W5's 10 KB and 100 KB).

    python benchmarks/probe_rows.py [--jobs 2000] [--sizes 10000,100000]
                                    [--blob json|repeat|random]

Enqueues ``--jobs`` jobs, one at a time from 20 concurrent producers (as W5's), each
with one string argument of each size (``producer.make_blob``), compression off and on
(``compress_over``), into a fresh jobs table on MariaDB and on PostgreSQL, and prints per
job: the stored payload's bytes, what the table then occupies, what the server wrote to
its log (MariaDB: ``Innodb_os_log_written``; PostgreSQL: the WAL position) and to its data
files (``Innodb_data_written``; PostgreSQL's ``pg_stat_bgwriter`` buffers and the
checkpointer's are not per statement, so the WAL is the figure there), and the server's
CPU from /proc. The servers' counters are global: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import sqlalchemy as sa
from producer import make_blob
from run import cpu_seconds, pids_where

from aqueue import Queue

REDIS = "redis://127.0.0.1:6379/9"
DATABASES = {
    "MariaDB": "mysql+asyncmy://root@127.0.0.1:3306/test",
    "PostgreSQL": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
}
SERVERS = {"MariaDB": ("mariadbd", "mysqld"), "PostgreSQL": ("postgres",)}


async def counters(conn: Any, db: str) -> dict[str, float]:
    if db == "MariaDB":
        rows = (await conn.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Innodb_%_written'"))).all()
        got = {name: float(value) for name, value in rows}
        return {"log": got["Innodb_os_log_written"], "data": got["Innodb_data_written"]}
    lsn = (await conn.execute(sa.text("SELECT pg_current_wal_lsn() - '0/0'"))).scalar_one()
    return {"log": float(lsn), "data": 0.0}


async def table_bytes(conn: Any, db: str, table: str) -> dict[str, float]:
    if db == "MariaDB":
        await conn.execute(sa.text(f"ANALYZE TABLE {table}"))
        row = (
            await conn.execute(
                sa.text(
                    "SELECT data_length, index_length FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = :t"
                ),
                {"t": table},
            )
        ).one()
        return {"table": float(row[0]), "indexes": float(row[1]), "toast": 0.0}
    row = (
        await conn.execute(
            sa.text(
                "SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), "
                "coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) "
                "FROM pg_class c WHERE c.relname = :t"
            ),
            {"t": table},
        )
    ).one()
    return {"table": float(row[0]), "indexes": float(row[1]), "toast": float(row[2])}


async def one(db: str, size: int, compress: bool, a: argparse.Namespace) -> None:
    table = "rows_" + uuid.uuid4().hex[:8]
    q = Queue(
        "rows",
        redis_url=REDIS,
        database_url=DATABASES[db],
        table=table,
        key_prefix=table,
        compress_over=4096 if compress else None,
    )

    @q.task
    async def blob(data: str) -> None:
        return None

    argument = make_blob(size, a.blob)
    await q.enqueue("blob", "warm-up")  # the schema exists before the window
    be = await q._backend()
    engine = be.store.engine  # type: ignore[attr-defined]  # the SQL store's
    pids = pids_where(lambda comm, _: comm in SERVERS[db])
    async with engine.connect() as conn:
        c0 = await counters(conn, db)
        cpu0 = cpu_seconds(pids)

        async def producer(k: int) -> None:
            for _ in range(k, a.jobs, 20):
                await q.enqueue("blob", argument)

        await asyncio.gather(*(producer(k) for k in range(20)))
        cpu1 = cpu_seconds(pids)
        c1 = await counters(conn, db)
        stored = (
            await conn.execute(sa.text(f"SELECT avg(length(payload)) FROM {table}"))
        ).scalar_one()
        sizes = await table_bytes(conn, db, table)
        await conn.commit()
    n = a.jobs + 1
    kib = 1024
    print(
        f"{db:<10} {size // 1000:>4} KB {'on ' if compress else 'off'}  payload "
        f"{float(stored) / kib:6.1f} KiB  table {sizes['table'] / n / kib:6.1f}"
        f" + toast {sizes['toast'] / n / kib:5.1f} + indexes {sizes['indexes'] / n / kib:4.1f}"
        f" KiB/job  log {(c1['log'] - c0['log']) / a.jobs / kib:6.1f} KiB/job"
        + (
            f"  data files {(c1['data'] - c0['data']) / a.jobs / kib:6.1f} KiB/job"
            if c1["data"]
            else ""
        )
        + f"  server CPU {(cpu1 - cpu0) / a.jobs * 1e6:5.0f} µs/job",
        flush=True,
    )
    await be.store.drop_schema()
    await q.close()


async def main(a: argparse.Namespace) -> None:
    for db in DATABASES:
        for size in a.sizes:
            for compress in (False, True):
                await one(db, size, compress, a)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000]
    )
    p.add_argument("--blob", choices=["json", "repeat", "random"], default="json")
    import uvloop

    uvloop.run(main(p.parse_args()))
