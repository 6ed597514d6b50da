"""Every job-control feature in one runnable tour (each step asserts what it shows).

    python examples/job_control.py

Uses AQUEUE_REDIS_URL / AQUEUE_DATABASE_URL when set, else the embedded default under
./.aqueue/. The test suite runs it (tests/acceptance/test_examples.py), so the snippets in
docs/job-control.md, which are taken from here, are tested.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import aqueue
from aqueue import (
    Backoff,
    JobStatus,
    Queue,
    QueueFullError,
    Retry,
    Runner,
    RunnerConfig,
    current_job,
)

# a table and Redis keys of its own for each run; max_size: enqueue raises QueueFullError
# when the queue holds 10,000 jobs that can still run
TABLE, PREFIX = f"tour_{uuid.uuid4().hex[:8]}", f"tour{uuid.uuid4().hex[:6]}"
queue = Queue("tour", max_size=10_000, table=TABLE, key_prefix=PREFIX)
log: list[str] = []


# --- retries: exponential backoff, an explicit sequence, asking for a retry ----------
@queue.task(retries=3, backoff=Backoff.sequence(0.05, 0.08, 0.09))  # fixed delays, the last repeats
async def flaky(n: int) -> int:
    if current_job().attempt < 3:  # the attempt number is visible to the handler
        raise ConnectionError("not yet")
    return n


@queue.task(retries=5, no_retry=[ValueError])  # some errors must never be retried
async def strict(x: str) -> int:
    return int(x)


@queue.task(retries=2)
async def polite() -> str:
    if current_job().attempt == 1:
        raise Retry(delay=0.05, reason="rate limited")  # retry after a given delay
    return "second try"


# --- timeouts, per task and per job --------------------------------------------------
@queue.task(timeout=0.1, retries=0)
async def slow(seconds: float) -> None:
    await asyncio.sleep(seconds)


# --- limits: several task types with their own concurrency in one runner -------------
@queue.task(concurrency=2)
async def scarce(i: int) -> int:
    await asyncio.sleep(0.01)
    return i


@queue.task
async def record(tag: str) -> str:
    log.append(tag)
    return tag


# --- cron / periodic ---------------------------------------------------------------
@queue.cron("*/5 * * * *")  # UTC; needs aqueue[cron] (cronsim)
async def nightly_report() -> None:
    log.append("report")


@queue.periodic(every=0.2, missed="skip")
async def heartbeat_report() -> None:
    log.append("tick")


async def main() -> int:
    await queue.connect()
    # delayed and scheduled jobs
    later = await record.options(delay=0.2).enqueue("delayed")
    at = await record.options(run_at=time.time() + 0.1).enqueue("scheduled")
    # priorities: higher runs first, and no level starves
    await record.options(priority=-1).enqueue("low")
    await record.options(priority=5).enqueue("high")
    # unique jobs: a second enqueue with a live key returns the existing job
    a = await record.options(unique_key="report:2026-11-26").enqueue("unique")
    b = await record.options(unique_key="report:2026-11-26").enqueue("unique")
    assert a.id == b.id
    # cancellation of a queued job: it never runs
    doomed = await record.options(delay=0.3).enqueue("cancelled")
    assert await doomed.cancel()
    # job expiry: not started within 0.01 s -> not run
    expired = await record.options(expires=0.01).enqueue("expired")
    await asyncio.sleep(0.02)  # no runner is up yet: let its deadline pass
    jobs = [await flaky.enqueue(7), await strict.enqueue("x"), await polite.enqueue()]
    slow_job = await slow.enqueue(5)
    quick = await slow.options(timeout=1).enqueue(0.2)  # a per-job timeout overrides
    scarce_jobs = await queue.enqueue_many([(scarce, (i,), {}) for i in range(10)])
    # executable tasks: a program run as a job, allowed program by program
    queue.allow_exec([sys.executable])
    program = await queue.exec([sys.executable, "-c", "print('hello from a program')"], timeout=10)
    # a bounded queue: with max_size jobs that can still run, an enqueue is refused
    small = Queue("tour_small", max_size=1, table=TABLE, key_prefix=PREFIX)
    await small.enqueue(record, "first")
    try:
        await small.enqueue(record, "second")
        raise AssertionError("max_size=1 took a second job")
    except QueueFullError:
        pass
    await small.purge()
    await small.close()

    await queue.run(RunnerConfig(burst=True, handle_signals=False, burst_horizon=1))

    assert await later.result(timeout=5) == "delayed"
    assert await at.result(timeout=5) == "scheduled"
    assert log.index("high") < log.index("low")
    assert await jobs[0].result(timeout=5) == 7
    strict_job = await jobs[1].info()
    assert strict_job.status is JobStatus.FAILED
    assert strict_job.attempts == 1  # ValueError is in no_retry
    assert await jobs[2].result(timeout=5) == "second try"
    assert await slow_job.status() is JobStatus.FAILED
    assert await quick.result(timeout=5) is None
    assert [await j.result(timeout=5) for j in scarce_jobs] == list(range(10))
    assert (await program.result())["stdout"] == "hello from a program\n"
    assert await doomed.status() is JobStatus.CANCELLED
    assert await expired.status() is JobStatus.FAILED
    assert "cancelled" not in log
    assert "expired" not in log
    assert "tick" in log
    # a cron schedule's ticks: every 5 minutes of UTC (times in UNIX microseconds)
    ticks = queue.schedules[nightly_report.name].ticks(0, 600_000_000)
    assert list(ticks) == [300_000_000, 600_000_000]
    # statistics: queue lengths by status, per-runner counters
    counts = await queue.counts()
    print({s.value: n for s, n in counts.items()})
    # per-runner counters: each live runner publishes them at every heartbeat
    runner = Runner(queue, RunnerConfig(handle_signals=False, heartbeat=0.1, lease=2))
    running = asyncio.create_task(runner.run())
    await record.enqueue("counted")
    deadline = time.monotonic() + 10
    while True:
        stats = await queue.runner_stats()  # {runner_id: {"executed": .., "failed": .., ...}}
        if stats.get(runner.id, {}).get("done", 0) >= 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    runner.stop()
    await running
    # the job, and any heartbeat_report tick of that runner
    assert stats[runner.id]["executed"] >= stats[runner.id]["done"] >= 1
    # results are kept for RunnerConfig.keep_results (7 days); purge on demand
    purged = await queue.purge_finished(older_than=0)
    print(f"tour ok: purged {purged} finished jobs; aqueue {aqueue.__version__}")
    await queue.purge()
    be = await queue._backend()
    await be.store.drop_schema()
    await queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
