"""The batched-insert rate on the real schema: the yardstick of ``enqueue_many`` (W1 batch).

    python benchmarks/probe_insert.py [--jobs 20000] [--batch 1000] [--rounds 3]
                                      [--parallel K] [--enqueue-batch N]
                                      [--enqueue-many] [--marks]

``Store.insert_jobs`` of ``--batch``-row batches, one statement at a time, into a fresh
jobs table (all its indexes and the unique key), on MariaDB with the server's durability
settings. Prints rows/s per round and the median.

``--enqueue-many`` follows every round at once with the same jobs through
``Queue.enqueue_many`` (``--batch`` per awaited call, as in W1; Redis at ``--redis``) and
prints the ratio of the pair, so that both rates come from the same minute. The clock
stops when the last call returns, as in W1; the time the producer then takes to write its
dispatch marks (``Queue.close``) is printed beside it.

``--parallel K`` inserts each ``--batch`` of rows as K statements at once (on K
connections), as ``Queue.enqueue_many`` does when the call holds more jobs than
``enqueue_batch`` (``--enqueue-batch``, default the ``Queue``'s: 500 on MariaDB).

``--marks`` compares, on the jobs of each round, marking them dispatched by id list (a
thousand ids per statement) and by id range (what an ``enqueue_many`` batch gets):
MariaDB's CPU per row, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from run import cpu_seconds, pids_where

from aqueue import Queue
from aqueue._ids import new_job_ids, now_us
from aqueue._models import NewJob, id_runs
from aqueue._store.store import Store


def _server_cpu() -> float | None:
    """CPU seconds of the local MariaDB server so far (None when it is not local)."""
    pids = pids_where(lambda comm, _: comm in ("mariadbd", "mysqld"))
    return cpu_seconds(pids) if pids else None


async def insert_round(a: argparse.Namespace) -> float:
    store = Store(a.database, table="probe_" + uuid.uuid4().hex[:8])
    await store.init_schema()
    try:
        now = now_us()
        ids = new_job_ids(a.jobs)
        jobs = [
            NewJob(ids[i], "probe", "noop", f"[[{i}],{{}}]", 0, 13, now, now) for i in range(a.jobs)
        ]
        t0 = time.perf_counter()
        part = -(-a.batch // a.parallel)
        for i in range(0, a.jobs, a.batch):
            block = jobs[i : i + a.batch]
            outs = await asyncio.gather(
                *(store.insert_jobs(block[k : k + part], now) for k in range(0, len(block), part))
            )
            for out in outs:
                assert not any(isinstance(o, BaseException) for o in out), out
        rate = a.jobs / (time.perf_counter() - t0)
        if a.marks:
            await marks(store, jobs, a.batch)
        return rate
    finally:
        await store.drop_schema()
        await store.close()


async def marks(store: Store, jobs: list[NewJob], batch: int) -> None:
    half = len(jobs) // 2
    for how, part in (("by id list", jobs[:half]), ("by id range", jobs[half:])):
        cpu0, t0 = _server_cpu(), time.perf_counter()
        for i in range(0, len(part), batch):
            chunk = part[i : i + batch]
            written = chunk[0].created_at  # the probe's rows: updated_at = created_at
            if how == "by id list":
                await store.mark_dispatched([(j.id, written) for j in chunk], "probe", now_us())
            else:
                singles, runs = id_runs(chunk)
                await store.mark_dispatched(
                    [(i, written) for i in singles], "probe", now_us(), [(r, written) for r in runs]
                )
        cpu1, wall = _server_cpu(), time.perf_counter() - t0
        server = (
            ""
            if cpu0 is None or cpu1 is None
            else f", MariaDB {(cpu1 - cpu0) / len(part) * 1e6:.1f} µs CPU/row"
        )
        print(f"    marks {how}: {wall / len(part) * 1e6:.1f} µs/row{server}")


async def enqueue_many_round(a: argparse.Namespace) -> tuple[float, float]:
    name = "probe_" + uuid.uuid4().hex[:8]
    extra: dict[str, Any] = {} if a.enqueue_batch is None else {"enqueue_batch": a.enqueue_batch}
    q = Queue(
        name, redis_url=a.redis, database_url=a.database, table=name, key_prefix=name, **extra
    )

    @q.task
    async def noop(i: int) -> None:
        return None

    await q.connect()
    try:
        t0 = time.perf_counter()
        for i in range(0, a.jobs, a.batch):
            await q.enqueue_many([(noop, (j,), {}) for j in range(i, min(a.jobs, i + a.batch))])
        rate = a.jobs / (time.perf_counter() - t0)
        t1 = time.perf_counter()
        be = await q._backend()
        await be.marker.close()
        return rate, time.perf_counter() - t1
    finally:
        be = await q._backend()
        await be.store.drop_schema()
        await be.broker.redis.delete(
            *[k async for k in be.broker.redis.scan_iter(match=f"{{{name}:*")] or ["-"]
        )
        await q.close()


async def main(a: argparse.Namespace) -> None:
    rates: list[float] = []
    ratios: list[float] = []
    for _ in range(a.rounds):
        rates.append(await insert_round(a))
        line = f"  batched insert {rates[-1]:,.0f} rows/s"
        if a.enqueue_many:
            rate, marking = await enqueue_many_round(a)
            ratios.append(rate / rates[-1])
            line += (
                f"; enqueue_many {rate:,.0f} jobs/s ({ratios[-1]:.0%}), "
                f"its marks written {marking * 1e3:.0f} ms after"
            )
        print(line)
    median = statistics.median(rates)
    how = (
        f"{a.batch}-row statements"
        if a.parallel == 1
        else f"{a.batch} rows as {a.parallel} concurrent statements"
    )
    print(f"batched insert, {how}: median {median:,.0f} rows/s")
    if ratios:
        print(f"enqueue_many / batched insert, pairs: median {statistics.median(ratios):.0%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--enqueue-batch", type=int, default=None)
    ap.add_argument("--enqueue-many", action="store_true")
    ap.add_argument("--marks", action="store_true")
    ap.add_argument("--database", default="mysql+asyncmy://root@127.0.0.1:3306/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args: Any = ap.parse_args()
    asyncio.run(main(args))
