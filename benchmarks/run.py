"""A first, aqueue-only benchmark: enqueue and drain throughput against real servers.

    python benchmarks/run.py [--jobs 20000] [--concurrency 100] [--database URL]

The side-by-side suite against arq, SAQ, taskiq and streaq is issue #5; this script keeps
the measurement method in one place until then: the clock stops when the last row is
durably ``done`` in SQL (the runner returns in burst mode only after that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from aqueue import Queue, Runner, RunnerConfig
from aqueue._store.store import Store


async def main(jobs: int, concurrency: int, database: str, redis: str) -> None:
    table = f"bench_{uuid.uuid4().hex[:8]}"
    queue = Queue(
        "bench",
        redis_url=redis,
        database_url=database,
        table=table,
        key_prefix=f"bench{uuid.uuid4().hex[:6]}",
    )

    @queue.task
    async def noop(i: int) -> None:
        return None

    try:
        await queue.connect()
        t0 = time.perf_counter()
        await asyncio.gather(*(noop.enqueue(i) for i in range(jobs)))
        enqueue_rate = jobs / (time.perf_counter() - t0)
        runner = Runner(
            queue, RunnerConfig(concurrency=concurrency, burst=True, handle_signals=False)
        )
        t0 = time.perf_counter()
        await runner.run()
        drain_rate = jobs / (time.perf_counter() - t0)
        print(
            f"| workload | jobs/s |\n|---|---|\n| enqueue (awaiting producers) | "
            f"{enqueue_rate:,.0f} |\n| drain no-op, concurrency {concurrency} | "
            f"{drain_rate:,.0f} |"
        )
    finally:
        await queue.purge()
        await queue.close()
        store = Store(database, table=table)
        await store.drop_schema()
        await store.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument(
        "--database",
        default=os.environ.get(
            "AQUEUE_BENCH_DATABASE_URL", "mysql+asyncmy://root@127.0.0.1:3306/test"
        ),
    )
    p.add_argument(
        "--redis", default=os.environ.get("AQUEUE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    a = p.parse_args()
    asyncio.run(main(a.jobs, a.concurrency, a.database, a.redis))
