"""The batched-insert rate on the real schema: the yardstick of ``enqueue_many`` (W1 batch).

    python benchmarks/probe_insert.py [--jobs 20000] [--batch 1000] [--rounds 3]

``Store.insert_jobs`` of ``--batch``-row batches, one statement at a time, into a fresh
jobs table (all its indexes and the unique key), on MariaDB with the server's durability
settings. Prints rows/s per round and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from aqueue._models import NewJob, new_job_id, now_us
from aqueue._store.store import Store


async def main(a: argparse.Namespace) -> None:
    rates = []
    for _ in range(a.rounds):
        store = Store(a.database, table="probe_" + uuid.uuid4().hex[:8])
        await store.init_schema()
        try:
            now = now_us()
            jobs = [
                NewJob(new_job_id(), "probe", "noop", f"[[{i}],{{}}]", 0, 13, now, now)
                for i in range(a.jobs)
            ]
            t0 = time.perf_counter()
            for i in range(0, a.jobs, a.batch):
                out = await store.insert_jobs(jobs[i : i + a.batch], now)
                assert not any(isinstance(o, BaseException) for o in out), out
            rates.append(a.jobs / (time.perf_counter() - t0))
        finally:
            await store.drop_schema()
            await store.close()
        print(f"  {rates[-1]:,.0f} rows/s")
    median = statistics.median(rates)
    print(f"batched insert, {a.batch}-row statements: median {median:,.0f} rows/s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database", default="mysql+asyncmy://root@127.0.0.1:3306/test")
    asyncio.run(main(ap.parse_args()))
