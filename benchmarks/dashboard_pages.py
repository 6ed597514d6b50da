"""The dashboard's answer time with 1,000,000 finished jobs in the table, on MariaDB and
PostgreSQL (not a test: a measurement, run by hand)::

    .nox/tests/bin/python benchmarks/dashboard_pages.py [--rows 1000000] [--db mariadb|postgres]
        [--calls 7] [--keep]

Fills a fresh table of its own (``aqueue_bench_dash``, created by the queue, dropped at
the end unless ``--keep``) in a few SQL statements (``INSERT ... SELECT`` from a
sequence, not one enqueue per job): jobs created over the last 30 days, finished 0.1 s
after, 2 % failed (with an error and a traceback), 1 % cancelled, the rest done; five
task names. Then times every page and API read through the ASGI app in-process (the app
and its SQL, no network): the first load (cold: a new app, nothing cached) and the
median and max of ``--calls`` loads after it (warm)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import aqueue
import aqueue.web
from aqueue._ids import now_us

URLS = {
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/test",
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
}
TABLE = "aqueue_bench_dash"
QUEUE = "bench"
TOKEN = "bench-token-0123456789"
SPAN = 30 * 86400 * 1_000_000
ERROR = (
    '{"type": "SMTPError", "message": "454 try again later", "traceback": '
    '"Traceback (most recent call last):\\n  ...\\nSMTPError: 454\\n"}'
)


def _fill_sql(db: str, rows: int, now: int) -> list[str]:
    """One ``INSERT ... SELECT`` per 100,000 rows: ``n`` from the server's sequence."""
    step = SPAN // rows
    start = now - SPAN
    cols = (
        "id, queue, task, payload, status, priority, attempts, stalls, max_attempts, run_at, "
        "result, error, created_at, updated_at, finished_at"
    )
    out = []
    chunk = 100_000
    for first in range(1, rows + 1, chunk):
        last = min(rows, first + chunk - 1)
        if db == "mariadb":
            seq = f"seq_{first}_to_{last}"
            n, created = "seq", f"({start} + seq * {step})"
            hexid = f"CONCAT(LPAD(HEX({created} DIV 1000), 12, '0'), LPAD(HEX(seq), 20, '0'))"
            src = f"FROM {seq}"
            task = (
                "ELT(1 + seq % 5, 'send_email', 'resize_image', 'charge_card', 'sync_crm', "
                "'report')"
            )
            payload = "CONCAT('{\"a\": [\"user', seq, '@example.com\", ', seq, '], \"k\": {}}')"
        else:
            n, created = "n", f"({start}::bigint + n::bigint * {step})"
            hexid = f"lpad(to_hex({created} / 1000), 12, '0') || lpad(to_hex(n), 20, '0')"
            src = f"FROM generate_series({first}, {last}) AS n"
            task = (
                "(ARRAY['send_email', 'resize_image', 'charge_card', 'sync_crm', 'report'])"
                "[1 + n % 5]"
            )
            payload = "'{\"a\": [\"user' || n || '@example.com\", ' || n || '], \"k\": {}}'"
        uuid = (
            "CONCAT(SUBSTR(h, 1, 8), '-', SUBSTR(h, 9, 4), '-', SUBSTR(h, 13, 4), '-', "
            "SUBSTR(h, 17, 4), '-', SUBSTR(h, 21, 12))"
        )
        # 2 % failed, 1 % cancelled (by n modulo 100, spread over the whole range)
        status = (
            f"CASE WHEN {n} % 100 < 2 THEN 'failed' WHEN {n} % 100 = 2 THEN 'cancelled' "
            "ELSE 'done' END"
        )
        inner = (
            f"SELECT LOWER({hexid}) AS h, {n} AS n, {created} AS c, {task} AS task, "
            f"{payload} AS payload, {status} AS status {src}"
        )
        stmt = (
            f"INSERT INTO {TABLE} ({cols}) SELECT {uuid}, '{QUEUE}', task, payload, status, "
            f"0, 1, 0, 3, c, CASE WHEN status = 'done' THEN 'null' END, "
            f"CASE WHEN status = 'failed' THEN '{ERROR}' END, c, c + 100000, c + 100000 "
            f"FROM ({inner}) AS g"
        )
        # the driver formats a statement without parameters too: a literal % is %%
        out.append(stmt.replace("%", "%%") if db == "mariadb" else stmt)
    return out


async def fill(db: str, rows: int) -> None:
    url = URLS[db]
    await drop(db)
    queue = aqueue.Queue(QUEUE, redis_url="redis://127.0.0.1:6379/0", database_url=url, table=TABLE)
    await queue._backend()  # creates the table and its indexes
    await queue.close()
    engine = create_async_engine(url)
    started = time.monotonic()
    for stmt in _fill_sql(db, rows, now_us()):
        async with engine.begin() as conn:
            await conn.exec_driver_sql(stmt)
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"ANALYZE {'TABLE ' if db == 'mariadb' else ''}{TABLE}")
    if db == "postgres":  # the visibility map, for index-only scans (as autovacuum would)
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql(f"VACUUM {TABLE}")
    await engine.dispose()
    print(f"{db}: filled {rows} rows in {time.monotonic() - started:.0f} s", flush=True)


async def _ids(engine: AsyncEngine) -> tuple[str, str, str, str]:
    async with engine.connect() as conn:

        async def one(sql: str) -> str:
            return str((await conn.exec_driver_sql(sql)).scalar_one())

        mid = await one(f"SELECT id FROM {TABLE} ORDER BY id LIMIT 1 OFFSET 500000")
        failed = await one(
            f"SELECT id FROM {TABLE} WHERE status = 'failed' ORDER BY id LIMIT 1 OFFSET 5000"
        )
        low = await one(f"SELECT MIN(created_at) FROM {TABLE}")
        high = await one(f"SELECT MAX(created_at) FROM {TABLE}")
    return mid, failed, low, high


def _day(us: int) -> str:
    return time.strftime("%Y-%m-%d+%H:%M", time.gmtime(us / 1e6))


async def measure(db: str, calls: int) -> None:
    url = URLS[db]
    engine = create_async_engine(url)
    mid, failed_id, low, high = await _ids(engine)
    await engine.dispose()
    middle = (int(low) + int(high)) // 2
    rng_from, rng_to = _day(middle), _day(middle + 86400 * 1_000_000)
    pages = {
        "overview": "/",
        "jobs, first page": "/jobs",
        "jobs, status=failed": "/jobs?status=failed",
        "jobs, task=charge_card": "/jobs?task=charge_card",
        "jobs, failed + task": "/jobs?status=failed&task=sync_crm",
        "jobs, deep page (500,000th)": f"/jobs?before={mid}",
        "jobs, deep page failed": f"/jobs?status=failed&before={mid}",
        "jobs, created range (1 day, mid)": f"/jobs?from={rng_from}&to={rng_to}",
        "jobs, by id": f"/jobs?job_id={failed_id}",
        "jobs, text (args)": "/jobs?text=user999999@",
        "jobs, text (error)": "/jobs?text=SMTPError",
        "jobs, text none found": "/jobs?text=no-such-text",
        "failed jobs": "/failed",
        "job detail": f"/jobs/{failed_id}",
        "runners": "/runners",
        "schedules": "/schedules",
        "api: job": f"/api/jobs/{failed_id}",
    }
    queue = aqueue.Queue(QUEUE, redis_url="redis://127.0.0.1:6379/0", database_url=url, table=TABLE)
    print(f"\n{db}\n{'page':34} {'cold ms':>8} {'median ms':>9} {'max ms':>8}")
    for name, path in pages.items():
        app = aqueue.web.app(queue, auth=aqueue.web.token_auth(TOKEN))  # nothing cached
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            t = time.perf_counter()
            r = await client.get(path)
            cold = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                r = await client.get(path)
                times.append((time.perf_counter() - t) * 1000)
        med, top = statistics.median(times), max(times)
        print(f"{name:34} {cold:8.1f} {med:9.1f} {top:8.1f}", flush=True)
    await queue.close()


async def drop(db: str) -> None:
    engine = create_async_engine(URLS[db])
    async with engine.begin() as conn:
        for suffix in ("_deps", "_tags", "_meta", ""):
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}{suffix}")
    await engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--db", choices=sorted(URLS), action="append")
    p.add_argument("--calls", type=int, default=7)
    p.add_argument("--keep", action="store_true", help="keep the table (and reuse it)")
    p.add_argument("--reuse", action="store_true", help="measure the table kept before")
    args = p.parse_args()
    for db in args.db or sorted(URLS):
        if not args.reuse:
            asyncio.run(fill(db, args.rows))
        asyncio.run(measure(db, args.calls))
        if not args.keep:
            asyncio.run(drop(db))


if __name__ == "__main__":
    main()
