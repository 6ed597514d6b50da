"""W3 probe: is a runner of 10 ms jobs short of claimed jobs, or of CPU?

    python benchmarks/probe_w3.py [--jobs 20000] [--prefetch 100]

One process: ``enqueue_many`` of N ``asyncio.sleep(0.01)`` jobs, then a ``Runner`` at
concurrency 100 in burst mode, while a sampler reads every millisecond how many handler
slots are busy and how many claimed jobs wait for one (private attributes of the runner:
this is a measuring tool, not an API). Then the bare loop of the same sleeps. Prints the
rate, the slot occupancy, and how late the handlers' sleeps and a 1 ms timer woke up.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from aqueue import Queue, RunnerConfig
from aqueue._runner.runner import Runner

CONCURRENCY = 100


async def bare(n: int) -> float:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with sem:
            await asyncio.sleep(0.01)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - t0)


def pct(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100)[p - 1] * 1e3


async def main(a: argparse.Namespace) -> None:
    table = "probe_" + uuid.uuid4().hex[:8]
    q = Queue("probe", redis_url=a.redis, database_url=a.database, table=table, key_prefix=table)
    loop = asyncio.get_running_loop()
    late: list[float] = []

    @q.task
    async def sleep(i: int) -> None:
        t0 = loop.time()
        await asyncio.sleep(0.01)
        late.append(loop.time() - t0 - 0.01)

    for i in range(0, a.jobs, 1000):
        await q.enqueue_many([(sleep, (j,), {}) for j in range(i, min(a.jobs, i + 1000))])
    cfg = RunnerConfig(
        concurrency=CONCURRENCY, burst=True, handle_signals=False, prefetch=a.prefetch
    )
    runner = Runner(q, cfg)
    busy: list[int] = []
    waiting: list[int] = []
    free: list[int] = []
    lag: list[float] = []

    async def sample() -> None:
        await runner.started.wait()
        while True:
            t = loop.time()
            await asyncio.sleep(0.001)
            lag.append(loop.time() - t - 0.001)
            gate = runner._handler_gate
            busy.append(CONCURRENCY - gate._free)
            waiting.append(len(gate._waiters))
            free.append(runner._free)

    sampler = asyncio.create_task(sample())
    t0 = time.perf_counter()
    try:
        await runner.run()
    finally:
        sampler.cancel()
        elapsed = time.perf_counter() - t0
        await (await q._backend()).store.drop_schema()
        await q.close()
    ceiling = await bare(a.jobs)
    print(f"rate {a.jobs / elapsed:,.0f} jobs/s (runner start included); bare loop {ceiling:,.0f}")
    print(
        f"handler slots busy: mean {statistics.mean(busy):.1f} of {CONCURRENCY}; claimed jobs "
        f"waiting for one: mean {statistics.mean(waiting):.1f}, none in "
        f"{sum(1 for w in waiting if w == 0) / len(waiting):.0%} of the samples"
    )
    # A runner slot is held from the take until the handler (and its hooks) is done.
    held = [runner._slots - f - b - w for f, b, w in zip(free, busy, waiting, strict=True)]
    print(
        f"runner slots ({runner._slots}): free mean {statistics.mean(free):.1f}; taken and "
        f"being claimed mean {statistics.mean(held):.1f}"
    )
    print(
        f"sleep(0.01) woke late by p50/p90/p99 {pct(late, 50):.1f}/{pct(late, 90):.1f}/"
        f"{pct(late, 99):.1f} ms; a 1 ms timer by {pct(lag, 50):.1f}/{pct(lag, 90):.1f}/"
        f"{pct(lag, 99):.1f} ms"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--prefetch", type=int, default=None)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--database", default="mysql+asyncmy://root@127.0.0.1:3306/test")
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))
