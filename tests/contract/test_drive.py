"""``aqueue.testing.drive``: the real runner on the in-memory backend does what it does on
the servers (retries, delays, timeouts, unique jobs, cancel, repush, manual commits,
hooks, result waits), ``drain`` reports what never finishes, and the queue is put back
afterwards. No server is used, except where a test checks that a connected queue gets its
real backend back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aqueue import (
    ConfigurationError,
    JobFailedError,
    JobNotFoundError,
    JobStatus,
    Queue,
    Retry,
    RunnerCrashedError,
    current_job,
)
from aqueue.testing import FakeClock, drive

from ..conftest import QueueFactory

NOWHERE = {"redis_url": "redis://127.0.0.1:9/0", "database_url": "sqlite+aiosqlite:///nowhere/x"}


def offline_queue(name: str = "drv", **kwargs: Any) -> Queue:
    """A queue whose URLs lead nowhere: only the in-memory parts can serve it."""
    return Queue(name, **NOWHERE, **kwargs)


async def test_retry_with_a_delay_then_success() -> None:
    q = offline_queue()
    seen: list[int] = []

    @q.task(retries=3)
    async def flaky() -> str:
        seen.append(current_job().attempt)
        if len(seen) == 1:
            raise Retry(delay=5)
        return "ok"

    async with drive(q) as d:
        job = await flaky.enqueue()
        await d.drain()
        assert (await job.info()).status is JobStatus.TODO
        await d.advance(4.9)
        assert seen == [1]
        await d.advance(0.1)
        assert await job.result(timeout=1) == "ok"
        assert seen == [1, 2]


async def test_no_retry_and_timeout_fail_at_once() -> None:
    q = offline_queue()
    never = asyncio.Event()

    @q.task(retries=5, no_retry=[ValueError])
    async def bad() -> None:
        raise ValueError("no")

    @q.task(retries=0, timeout=0.05)
    async def slow() -> None:
        await never.wait()

    async with drive(q) as d:
        jobs = [await bad.enqueue(), await slow.enqueue()]
        await d.drain()
        for job in jobs:
            info = await job.info()
            assert (info.status, info.attempts) == (JobStatus.FAILED, 1)
        with pytest.raises(JobFailedError, match="ValueError"):
            await jobs[0].result(timeout=1)


async def test_a_result_waiter_is_woken_by_the_finish() -> None:
    q = offline_queue()
    go = asyncio.Event()

    @q.task
    async def gated() -> int:
        await go.wait()
        return 7

    async with drive(q) as d:
        job = await gated.enqueue()
        waiting = asyncio.ensure_future(job.result(timeout=5, poll=60))
        go.set()
        await d.drain()
        assert await asyncio.wait_for(waiting, 5) == 7


async def test_unique_jobs_cancel_and_repush() -> None:
    q = offline_queue()
    runs: list[str] = []

    @q.task(retries=0)
    async def work(tag: str) -> None:
        runs.append(tag)
        if tag == "fails":
            raise RuntimeError(tag)

    async with drive(q) as d:
        a = await work.options(unique_key="u", delay=60).enqueue("a")
        b = await work.options(unique_key="u", delay=60).enqueue("b")
        assert a.id == b.id
        assert await a.cancel()
        failing = await work.enqueue("fails")
        await d.advance(60)
        assert runs == ["fails"]
        assert (await a.info()).status is JobStatus.CANCELLED
        await q.repush(failing.id)
        await d.drain()
        assert runs == ["fails", "fails"]
        info = await failing.info()
        assert (info.status, info.attempts) == (JobStatus.FAILED, 1)


async def test_manual_commit_hooks_and_middleware() -> None:
    q = offline_queue()
    events: list[str] = []

    @q.before_job
    async def before(ctx: Any) -> None:
        events.append(f"before:{ctx.task}")

    @q.after_job
    async def after(ctx: Any, status: Any, exc: Any) -> None:
        events.append(f"after:{status}")

    @q.middleware
    async def around(ctx: Any, call_next: Any) -> Any:
        events.append("in")
        return await call_next()

    @q.task(auto_commit=False)
    async def manual() -> None:
        await current_job().commit("done", result={"n": 1})

    async with drive(q) as d:
        job = await manual.enqueue()
        await d.drain()
        assert await job.result(timeout=1) == {"n": 1}
    assert events[:2] == ["before:manual", "in"]
    assert any(e.startswith("after:") for e in events)


async def test_drain_times_out_on_a_handler_that_never_returns() -> None:
    q = offline_queue()
    never = asyncio.Event()

    @q.task
    async def stuck() -> None:
        await never.wait()

    async with drive(q) as d:
        job = await stuck.enqueue()
        with pytest.raises(TimeoutError, match=job.id):
            await d.drain(timeout=0.2)
        never.set()
        await d.drain()
        assert (await job.info()).status is JobStatus.DONE


async def test_a_runner_that_cannot_start_is_reported() -> None:
    q = offline_queue()

    @q.on_startup
    async def broken(state: dict[str, Any]) -> None:
        raise RuntimeError("no config")

    with pytest.raises(RunnerCrashedError, match="no config"):
        async with drive(q):
            pass
    assert q._parts_factory is None


async def test_the_clock_is_the_tests_and_is_put_back() -> None:
    q = offline_queue()

    @q.task
    async def t() -> None:
        return None

    clock = FakeClock(start=1_000_000_000_000_000)  # 2001-09-09
    async with drive(q, clock=clock) as d:
        job = await t.options(delay=10).enqueue()
        rec = await job.info()
        assert (rec.created_at, rec.run_at) == (clock(), clock() + 10_000_000)
        with pytest.raises(ConfigurationError):
            async with drive(q):
                pass
        await d.drain_all()
        assert clock() == rec.run_at
        assert (await job.info()).status is JobStatus.DONE
    assert q._clock is not clock  # the real clock again
    assert q._clock() > 1_700_000_000_000_000


async def test_a_connected_queue_gets_its_backend_back(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def t() -> None:
        return None

    real = await t.enqueue()
    be = q._be
    async with drive(q) as d:
        fake = await t.enqueue()
        await d.drain()
        assert await q.counts() == {**dict.fromkeys(JobStatus, 0), JobStatus.DONE: 1}
    assert q._be is be
    assert (await real.info()).status is JobStatus.TODO  # never run by the driven runner
    with pytest.raises(JobNotFoundError):
        await fake.info()


async def test_two_queues_on_one_clock_exit_in_any_order() -> None:
    clock = FakeClock(start=1_000_000_000_000_000)
    qa, qb = offline_queue("a"), offline_queue("b")

    @qa.task
    async def ta() -> str:
        return "a"

    @qb.task
    async def tb() -> str:
        return "b"

    first = drive(qa, clock=clock)
    da = await first.__aenter__()
    async with drive(qb, clock=clock) as db:
        ja, jb = await ta.options(delay=5).enqueue(), await tb.enqueue()
        await db.drain()
        await da.advance(5)
        assert await ja.result(timeout=1) == "a"
        assert await jb.result(timeout=1) == "b"
        await first.__aexit__(None, None, None)  # the outer one ends first
        assert qb._clock is clock and qa._clock is not clock  # qa put back, qb still driven
    assert qb._clock is not clock


async def test_a_running_job_cancelled_is_stopped_at_the_next_renewal() -> None:
    q = offline_queue()
    started, stopped = asyncio.Event(), asyncio.Event()

    @q.task
    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    async with drive(q) as d:
        job = await forever.enqueue()
        async with asyncio.timeout(5):
            await started.wait()
        assert await job.cancel()
        await d.drain(timeout=5)
        assert stopped.is_set()
        assert (await job.info()).status is JobStatus.CANCELLED
