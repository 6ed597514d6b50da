"""Job control: per-job timeout and expiry, retry interval sequences, cancellation."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from aqueue import Backoff, JobFailedError, JobStatus, Runner, RunnerConfig, current_job

from ..conftest import QueueFactory


def burst(queue: Any, **kw: Any) -> Runner:
    return Runner(queue, RunnerConfig(burst=True, handle_signals=False, **kw))


async def test_per_job_timeout_overrides_the_task(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task(retries=0, timeout=30)
    async def nap(s: float) -> str:
        await asyncio.sleep(s)
        return "rested"

    short = await nap.options(timeout=0.05).enqueue(5)
    fine = await nap.enqueue(0.01)
    await burst(q).run()
    with pytest.raises(JobFailedError, match="timed out"):
        await short.result(timeout=1)
    assert await fine.result(timeout=1) == "rested"


async def test_expired_job_is_not_run(make_queue: QueueFactory) -> None:
    q = make_queue()
    ran: list[str] = []

    @q.task
    async def late() -> None:
        ran.append(current_job().job_id)

    job = await late.options(expires=0.05).enqueue()
    keep = await late.options(expires=60).enqueue()
    await asyncio.sleep(0.1)  # let the deadline pass (this is the condition under test)
    await burst(q).run()
    with pytest.raises(JobFailedError) as err:
        await job.result(timeout=1)
    assert err.value.error_type == "JobExpiredError"
    assert ran == [keep.id]


async def test_retry_interval_sequence(make_queue: QueueFactory) -> None:
    q = make_queue()
    stamps: list[float] = []

    @q.task(retries=3, backoff=Backoff.sequence(0.05, 0.2, 0.1))
    async def flaky() -> int:
        stamps.append(time.monotonic())
        if len(stamps) < 4:
            raise RuntimeError("again")
        return len(stamps)

    job = await flaky.enqueue()
    await burst(q).run()
    assert await job.result(timeout=1) == 4
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.2
    assert gaps[2] >= 0.1


async def test_cancel_queued_and_running(make_queue: QueueFactory) -> None:
    q = make_queue()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    @q.task
    async def long() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @q.task
    async def never() -> None:
        raise AssertionError("a cancelled job ran")

    queued = await never.options(delay=0.3).enqueue()
    assert await queued.cancel() is True
    running = await long.enqueue()
    runner = Runner(q, RunnerConfig(handle_signals=False, lease=2, heartbeat=0.1))
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(started.wait(), 10)
        assert await running.cancel("no longer needed") is True
        await asyncio.wait_for(cancelled.wait(), 5)
        await asyncio.sleep(0.5)  # the delayed (cancelled) job's time comes and goes
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)
    assert await queued.status() is JobStatus.CANCELLED
    assert await running.status() is JobStatus.CANCELLED
    with pytest.raises(JobFailedError, match="no longer needed"):
        await running.result(timeout=1)
    assert await running.cancel() is False
    assert runner.stats.finishes_rejected == 0


async def test_per_task_concurrency_limit(make_queue: QueueFactory) -> None:
    q = make_queue()
    now_running = {"narrow": 0, "wide": 0}
    peak = {"narrow": 0, "wide": 0}

    async def body(kind: str) -> None:
        now_running[kind] += 1
        peak[kind] = max(peak[kind], now_running[kind])
        await asyncio.sleep(0.02)
        now_running[kind] -= 1

    @q.task(concurrency=2)
    async def narrow() -> None:
        await body("narrow")

    @q.task
    async def wide() -> None:
        await body("wide")

    await q.enqueue_many(
        [(narrow, (), {}) for _ in range(20)] + [(wide, (), {}) for _ in range(20)]
    )
    await burst(q, concurrency=20).run()
    assert peak["narrow"] == 2
    assert peak["wide"] > 2
    assert (await q.counts())[JobStatus.DONE] == 40


async def test_queue_max_size(make_queue: QueueFactory) -> None:
    from aqueue import QueueFullError

    q = make_queue(max_size=5)

    @q.task
    async def t(i: int) -> None:
        return None

    for i in range(5):
        await t.enqueue(i)
    await asyncio.sleep(0.25)  # the size is re-read at most every 0.2 s (documented bound)
    with pytest.raises(QueueFullError, match="max_size=5"):
        await t.enqueue(99)
    assert sum((await q.counts()).values()) == 5


async def test_runner_stats_and_purge_finished(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task(retries=0)
    async def maybe(ok: bool) -> None:
        if not ok:
            raise ValueError("no")

    await q.enqueue_many([(maybe, (True,), {})] * 3 + [(maybe, (False,), {})])
    runner = Runner(q, RunnerConfig(handle_signals=False, lease=2, heartbeat=0.1))
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(200):
            stats = await q.runner_stats()
            if stats.get(runner.id, {}).get("executed") == 4:
                break
            await asyncio.sleep(0.05)
        assert stats[runner.id]["done"] == 3
        assert stats[runner.id]["failed"] == 1
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)
    # A delayed job cancelled before it was due is purged with the others: no index
    # holds finished_at, and the purge reads finished jobs by run_at (schema 3).
    later = await maybe.options(delay=3600).enqueue(True)
    assert await later.cancel() is True
    assert await q.purge_finished(older_than=3600) == 0
    assert await q.purge_finished(older_than=0) == 5
    assert sum((await q.counts()).values()) == 0


async def test_executable_tasks(make_queue: QueueFactory) -> None:
    import sys

    from aqueue import ConfigurationError

    q = make_queue()
    q.allow_exec([sys.executable])
    ok = await q.exec([sys.executable, "-c", "print(6 * 7)"])
    bad = await q.exec([sys.executable, "-c", "import sys; sys.stderr.write('oops'); sys.exit(3)"])
    slow = await q.exec([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    with pytest.raises(ConfigurationError, match="not allowed"):
        await q.exec(["rm", "-rf", "/tmp/x"])
    await burst(q).run()
    assert await ok.result(timeout=1) == {"stdout": "42\n", "exit_code": 0}
    with pytest.raises(JobFailedError) as err:
        await bad.result(timeout=1)
    assert err.value.error_type == "ExecError"
    assert "exited with code 3: oops" in err.value.error_message
    with pytest.raises(JobFailedError, match=r"timed out after 0\.5s"):
        await slow.result(timeout=1)


async def test_periodic_task_runs_once_per_tick_across_runners(make_queue: QueueFactory) -> None:
    qa = make_queue()
    qb = make_queue()
    seen: list[str] = []

    for q in (qa, qb):

        @q.periodic(every=0.2, missed="skip", name="tick")
        async def tick() -> None:
            seen.append(current_job().job_id)

    cfg = RunnerConfig(handle_signals=False, lease=2, heartbeat=0.5)
    ra, rb = Runner(qa, cfg), Runner(qb, cfg)
    tasks = [asyncio.create_task(ra.run()), asyncio.create_task(rb.run())]
    try:
        for _ in range(300):
            if len(set(seen)) >= 5:
                break
            await asyncio.sleep(0.02)
    finally:
        ra.stop()
        rb.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert len(set(seen)) >= 5
    assert len(seen) == len(set(seen)), "a tick ran twice"


async def test_priorities_order_without_starvation(make_queue: QueueFactory) -> None:
    q = make_queue()
    order: list[str] = []

    @q.task
    async def job(level: str) -> None:
        order.append(level)

    for level, prio in (("low", -1), ("normal", 0), ("high", 5)):
        await q.options(priority=prio).enqueue_many([(job, (level,), {})] * 30)
    await burst(q, concurrency=1, prefetch=0).run()
    assert len(order) == 90
    mean = {
        lv: sum(i for i, x in enumerate(order) if x == lv) / 30 for lv in ("high", "normal", "low")
    }
    assert mean["high"] < mean["normal"] < mean["low"]
    assert order[:3] == ["high"] * 3
    last_high = max(i for i, x in enumerate(order) if x == "high")
    assert any(x == "low" for x in order[:last_high]), "low starved while high was backlogged"


async def test_priority_survives_delay_and_wakes_idle_runner(make_queue: QueueFactory) -> None:
    q = make_queue()
    got: list[int] = []
    done = asyncio.Event()

    @q.task
    async def job(n: int) -> None:
        got.append(n)
        if len(got) == 2:
            done.set()

    runner = Runner(q, RunnerConfig(handle_signals=False, block_timeout=30))
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 10)
        await job.options(priority=3).enqueue(1)  # wakes the runner blocked in BLMOVE
        await job.options(priority=-3, delay=0.05).enqueue(2)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 40)
    assert sorted(got) == [1, 2]


async def test_unique_key_under_concurrent_producers(make_queue: QueueFactory) -> None:
    qa, qb = make_queue(), make_queue()
    for q in (qa, qb):

        @q.task(name="report")
        async def report(day: str) -> str:
            return day

    jobs = await asyncio.gather(
        *(
            (qa if i % 2 else qb).options(unique_key="daily:2026-11-26").enqueue("report", "x")
            for i in range(40)
        )
    )
    assert len({j.id for j in jobs}) == 1
    assert sum((await qa.counts()).values()) == 1
    ra = burst(qa)
    rb = burst(qb)
    await asyncio.gather(ra.run(), rb.run())
    assert ra.stats.executed + rb.stats.executed == 1
    # the key is released once the job finished: a new one may be enqueued
    again = await qa.options(unique_key="daily:2026-11-26").enqueue("report", "y")
    assert again.id != jobs[0].id


async def test_priorities_across_two_runners(make_queue: QueueFactory) -> None:
    qa, qb = make_queue(), make_queue()
    order: list[str] = []
    for q in (qa, qb):

        @q.task(name="job")
        async def job(level: str) -> None:
            order.append(level)
            await asyncio.sleep(0.002)

    for level, prio in (("low", -1), ("high", 5)):
        await qa.options(priority=prio).enqueue_many([("job", (level,), {})] * 40)
    await asyncio.gather(
        burst(qa, concurrency=1, prefetch=0).run(), burst(qb, concurrency=1, prefetch=0).run()
    )
    assert len(order) == 80
    first_half = order[:40]
    assert first_half.count("high") > first_half.count("low")
    assert "low" in first_half, "low starved"
