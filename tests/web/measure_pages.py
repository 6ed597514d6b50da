"""One-off measurement (not a test): the dashboard's answer time with 1,000,000
finished jobs in a MariaDB table. Fills the table with multi-row INSERTs (skipped when
it already holds the rows), then times each page through the ASGI app in-process
(the app and its SQL, no network), median of N calls after a warm-up::

    .nox/tests/bin/python -m tests.web.measure_pages [--rows 1000000] [--drop]

Jobs: created over the last 30 days (one every ~2.6 s), finished 0.1 s after, 2 % failed
(with an error and a traceback), 1 % cancelled, the rest done; five task names."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import aqueue
import aqueue.web
from aqueue._ids import now_us

URL = "mysql+asyncmy://root@127.0.0.1:3306/test"
TABLE = "aqueue_web_1m"
QUEUE = "bench"
TASKS = ["send_email", "resize_image", "charge_card", "sync_crm", "report"]
BATCH = 5000


def _id(created_us: int, n: int) -> str:
    """A time-ordered id shaped as the generated ones (48-bit ms, then counters)."""
    ms = created_us // 1000
    h = f"{ms:012x}{n:020x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


async def fill(rows: int) -> None:
    queue = aqueue.Queue(QUEUE, redis_url="redis://127.0.0.1:6379/0", database_url=URL, table=TABLE)
    be = await queue._backend()  # creates the table and its indexes
    await queue.close()
    del be
    engine = create_async_engine(URL)
    async with engine.begin() as conn:
        have = (await conn.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE}"))).scalar_one()
    if have >= rows:
        print(f"{TABLE}: {have} rows already")
        await engine.dispose()
        return
    rng = random.Random(1)
    now = now_us()
    span = 30 * 86400 * 1_000_000
    step = span // rows
    trace = "Traceback (most recent call last):\n  ...\nSMTPError: 454\n"
    tb = json.dumps({"type": "SMTPError", "message": "454 try again later", "traceback": trace})
    started = time.monotonic()
    cols = ("id, queue, task, payload, status, priority, attempts, stalls, max_attempts, "
            "run_at, result, error, created_at, updated_at, finished_at")  # fmt: skip
    for first in range(have, rows, BATCH):
        values = []
        for n in range(first, min(rows, first + BATCH)):
            created = now - span + n * step
            fin = created + 100_000
            r = rng.random()
            status = "failed" if r < 0.02 else "cancelled" if r < 0.03 else "done"
            payload = json.dumps({"a": [f"user{n}@example.com", n], "k": {}})
            values.append((_id(created, n), QUEUE, TASKS[n % 5], payload, status, 0, 1, 0, 3,
                           created, "null" if status == "done" else None,
                           tb if status == "failed" else None, created, fin, fin))  # fmt: skip
        async with engine.begin() as conn:
            raw = await conn.get_raw_connection()
            cur = raw.driver_connection.cursor()
            marks = ", ".join(["%s"] * 15)
            await cur.executemany(f"INSERT INTO {TABLE} ({cols}) VALUES ({marks})", values)
        if (first // BATCH) % 20 == 0:
            print(f"  {first + len(values)} rows, {time.monotonic() - started:.0f} s", flush=True)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"ANALYZE TABLE {TABLE}"))
    await engine.dispose()
    print(f"filled {rows - have} rows in {time.monotonic() - started:.0f} s")


async def measure(calls: int) -> None:
    queue = aqueue.Queue(QUEUE, redis_url="redis://127.0.0.1:6379/0", database_url=URL, table=TABLE)
    app = aqueue.web.app(queue, auth=aqueue.web.allow_all)
    engine = create_async_engine(URL)
    async with engine.connect() as conn:
        mid = (await conn.execute(sa.text(
            f"SELECT id FROM {TABLE} ORDER BY id LIMIT 1 OFFSET 500000"))).scalar_one()  # fmt: skip
        failed_id = (await conn.execute(sa.text(
            f"SELECT id FROM {TABLE} WHERE status = 'failed' ORDER BY id LIMIT 1 OFFSET 5000"
        ))).scalar_one()  # fmt: skip
    await engine.dispose()
    pages = {
        "overview": "/",
        "jobs, first page": "/jobs",
        "jobs, status=failed": "/jobs?status=failed",
        "jobs, task=charge_card": "/jobs?task=charge_card",
        "jobs, failed + task": "/jobs?status=failed&task=sync_crm",
        "jobs, deep page (500,000th)": f"/jobs?before={mid}",
        "jobs, deep page failed": f"/jobs?status=failed&before={mid}",
        "jobs, created range (1 day)": "/jobs?from=2026-11-20+00:00&to=2026-11-21+00:00",
        "jobs, by id": f"/jobs?job_id={failed_id}",
        "jobs, text (scan)": "/jobs?text=user999999@",
        "failed jobs": "/failed",
        "job detail": f"/jobs/{failed_id}",
        "runners": "/runners",
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        print(f"{'page':34} {'first ms':>9} {'median ms':>9} {'max ms':>8}")
        for name, path in pages.items():
            t = time.perf_counter()
            r = await client.get(path)
            first = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                r = await client.get(path)
                times.append((time.perf_counter() - t) * 1000)
            med, top = statistics.median(times), max(times)
            print(f"{name:34} {first:9.1f} {med:9.1f} {top:8.1f}", flush=True)
    await queue.close()


async def drop() -> None:
    engine = create_async_engine(URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_meta"))
    await engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--calls", type=int, default=9)
    p.add_argument("--drop", action="store_true", help="drop the table at the end")
    args = p.parse_args()
    asyncio.run(fill(args.rows))
    asyncio.run(measure(args.calls))
    if args.drop:
        asyncio.run(drop())


if __name__ == "__main__":
    main()
