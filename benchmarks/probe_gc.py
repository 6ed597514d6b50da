"""GC probe: what the garbage collector costs a runner draining short jobs.

    python benchmarks/probe_gc.py [--jobs 20000] [--pairs 3]

Each pair enqueues N no-op jobs (``enqueue_many``, in a process of its own) and drains
them in a fresh process with a ``Runner`` at concurrency 100 in burst mode: once with the
runner's GC tuning off (``gc_threshold=None``: Python's collector as it comes), once on
(the default). Prints, per drain, the rate, the runner process's CPU per job, and the
collections by generation with the time spent in them (``gc.callbacks``). No counter in
the job, no harness: only aqueue's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import time
import uuid

from aqueue import Queue, RunnerConfig
from aqueue._runner.runner import Runner

REDIS = "redis://127.0.0.1:6379/9"
DATABASE = "mysql+asyncmy://root@127.0.0.1:3306/test"


def make_queue(table: str) -> Queue:
    q = Queue("probe", redis_url=REDIS, database_url=DATABASE, table=table, key_prefix=table)

    @q.task
    async def noop(i: int) -> None:
        return None

    return q


async def enqueue(table: str, n: int) -> None:
    q = make_queue(table)
    for i in range(0, n, 1000):
        await q.enqueue_many([("noop", (j,), {}) for j in range(i, min(n, i + 1000))])
    await q.close()


async def drain(table: str, n: int, tuned: bool) -> None:
    q = make_queue(table)
    cfg = RunnerConfig(concurrency=100, burst=True, handle_signals=False)
    if not tuned:
        cfg = RunnerConfig(concurrency=100, burst=True, handle_signals=False, gc_threshold=None)
    runner = Runner(q, cfg)
    await q._backend()
    spent = [0.0, 0.0, 0.0]
    count = [0, 0, 0]
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            count[info["generation"]] += 1

    gc.callbacks.append(on_gc)
    c0, t0 = time.process_time(), time.perf_counter()
    try:
        await runner.run()
    finally:
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        gc.callbacks.remove(on_gc)
        await (await q._backend()).store.drop_schema()
        await q.close()
    ms = " / ".join(f"{c} in {s * 1e3:.0f} ms" for c, s in zip(count, spent, strict=True))
    print(
        f"{'tuned' if tuned else 'untuned':>8}: {n / elapsed:7,.0f} jobs/s, "
        f"{cpu / n * 1e6:5.1f} µs CPU per job; collections gen 0 / 1 / 2: {ms}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--phase", choices=["enqueue", "untuned", "tuned"], help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    a = ap.parse_args()
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    if a.phase == "enqueue":
        run(enqueue(a.table, a.jobs))
        return
    if a.phase is not None:
        run(drain(a.table, a.jobs, a.phase == "tuned"))
        return
    me = [sys.executable, os.path.abspath(__file__), "--jobs", str(a.jobs)]
    for _ in range(a.pairs):
        for phase in ("untuned", "tuned"):
            table = "probe_" + uuid.uuid4().hex[:8]
            subprocess.run([*me, "--phase", "enqueue", "--table", table], check=True)
            subprocess.run([*me, "--phase", phase, "--table", table], check=True)


if __name__ == "__main__":
    main()
