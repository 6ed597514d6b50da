"""Runners interrupted in process, where the order of events is deterministic: an event
loop stopped past its lease (claimed jobs are given back, not started), a stop while a
claim is in flight (its job does not start), and a runner started right after Redis lost
fresh jobs (it finds them within seconds).

A handler that blocks the loop with ``time.sleep`` stops every runner of the process at
once, as SIGSTOP or a suspended machine does (the monotonic clock runs on meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis.asyncio as aioredis

from aqueue import JobStatus, Runner, RunnerConfig, StoreError

from ..chaos.harness import wait_for
from ..conftest import REDIS_URL, QueueFactory
from .sqlproxy import CLAIM, FaultProxy, fault_proxy

SQL_SERVERS = pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)

proxy = pytest.fixture(fault_proxy)


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_claimed_job_is_given_back_not_started_after_a_pause_past_the_deadline(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    queue = make_queue()
    started: list[tuple[str, float]] = []
    unblocked: list[float] = []

    @queue.task
    async def freeze(seconds: float) -> None:
        started.append(("freeze", time.monotonic()))
        time.sleep(seconds)  # stops the whole event loop: the runner is paused
        unblocked.append(time.monotonic())

    @queue.task
    async def quick() -> None:
        started.append(("quick", time.monotonic()))

    # one slot and one prefetched job: ``quick`` is claimed and waits while ``freeze`` runs
    cfg = RunnerConfig(concurrency=1, prefetch=1, lease=1.5, heartbeat=0.5, handle_signals=False)
    first = await freeze.enqueue(2.5)
    second = await quick.enqueue()
    runner = Runner(queue, cfg)
    with caplog.at_level(logging.INFO, logger="aqueue"):
        task = asyncio.ensure_future(runner.run())

        async def both_done() -> bool:
            return await second.status() is JobStatus.DONE and await first.status() in (
                JobStatus.DONE,
                JobStatus.TODO,
                JobStatus.RUNNING,
            )

        await wait_for(both_done, 30, "the quick job done")
        runner.stop()
        await asyncio.wait_for(task, 20)
    assert unblocked, started
    quick_starts = [t for name, t in started if name == "quick"]
    assert len(quick_starts) == 1, (started, caplog.text[-3000:])
    # it was not started on the claim made before the pause: given back and claimed anew
    assert "giving it back" in caplog.text, caplog.text[-3000:]
    info = await second.info()
    assert info.attempts == 1 and info.stalls == 0, info


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_a_runner_back_from_a_pause_past_its_lease_stops_its_handler_before_another_runs_it(
    make_queue: QueueFactory, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole process stops past the lease (the test blocks the loop, as SIGSTOP of
    the machine's runners would), and from then on the database holds every statement of
    runner A without answering. A's handler must stop on A's own clock, half a heartbeat
    after the process runs again (its grace for a renewal), before runner B (whose
    reclaimer holds off a whole heartbeat after the pause) reclaims the job and runs it:
    never two runs at once. A waiting on its renewal or on a clock reading first would
    let B's run start beside A's. (The database answers A again once A's handler is
    cancelled: a runner with nothing running may fetch again, and a claim held
    forever would keep the job from running anywhere.)"""
    a_queue = make_queue(database_url=proxy.url())
    b_queue = make_queue()
    events: list[tuple[str, float]] = []
    runs = 0

    async def long() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            events.append(("rerun started", time.monotonic()))
            return
        events.append(("first run started", time.monotonic()))
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append(("first run cancelled", time.monotonic()))
            raise

    for q in (a_queue, b_queue):
        q.task(name="long")(long)
    cfg = RunnerConfig(
        concurrency=2,
        prefetch=0,
        lease=2.0,
        heartbeat=0.8,
        reclaim_period=0.2,
        handle_signals=False,
    )
    runner_a, runner_b = Runner(a_queue, cfg), Runner(b_queue, cfg)
    with caplog.at_level(logging.INFO, logger="aqueue"):
        task_a = asyncio.ensure_future(runner_a.run())
        job = await a_queue.enqueue("long")
        await wait_for(lambda: runs == 1, 20, "the first run of the job started on runner A")
        task_b = asyncio.ensure_future(runner_b.run())
        await asyncio.wait_for(runner_b.started.wait(), 20)
        proxy.frozen = True  # from now on A's statements get no answer
        time.sleep(2.8)  # stops the whole event loop: both runners are paused
        events.append(("resumed", time.monotonic()))
        try:
            await wait_for(
                lambda: "first run cancelled" in dict(events) or runs == 2,
                20,
                "A's handler cancelled (or the job run again)",
            )
        finally:
            proxy.release.set()  # the database answers A again
        await wait_for(lambda: runs == 2, 30, "the job run again")

        async def done() -> bool:
            return await job.status() is JobStatus.DONE

        try:
            await wait_for(done, 30, "the job done")
        finally:
            runner_a.stop()
            runner_b.stop()
            await asyncio.wait_for(asyncio.gather(task_a, task_b), 30)
    when = dict(events)
    assert set(when) == {"first run started", "resumed", "first run cancelled", "rerun started"}
    assert when["first run cancelled"] < when["rerun started"], (events, caplog.text[-3000:])
    assert "no lease renewal acknowledged within the lease" in caplog.text
    print(
        f"after the pause: A's handler cancelled in "
        f"{1000 * (when['first run cancelled'] - when['resumed']):.1f} ms, B's run started "
        f"after {1000 * (when['rerun started'] - when['resumed']):.1f} ms"
    )


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_runner_started_right_after_redis_lost_fresh_jobs_runs_them_within_5s(
    make_queue: QueueFactory,
) -> None:
    """1,000 jobs enqueued by a producer that stays up, their Redis data lost at once, a
    runner started right away with the default sweep settings: the producer's dispatch
    marks land after the runner's first look; it looks again and runs them all in 5 s."""
    producer = make_queue()

    @producer.task
    async def noop(n: int) -> int:
        return n

    await producer.enqueue_many([(noop, (i,), {}) for i in range(1000)])
    be = await producer._backend()
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{be.broker.keys.tag}*")]
        assert keys
        await r.delete(*keys)  # this queue's share of a FLUSHDB, epoch included
    finally:
        await r.aclose()
    consumer = make_queue()
    consumer.task(noop.fn)
    runner = Runner(consumer, RunnerConfig(concurrency=50, handle_signals=False))
    t0 = time.monotonic()
    task = asyncio.ensure_future(runner.run())

    async def all_done() -> bool:
        return (await consumer.counts()).get(JobStatus.DONE, 0) == 1000

    await wait_for(all_done, 30, "1,000 jobs done")
    elapsed = time.monotonic() - t0
    runner.stop()
    await asyncio.wait_for(task, 20)
    print(f"runner start -> 1,000 jobs done: {elapsed:.2f}s")
    assert elapsed <= 5.0


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_stop_during_a_claim_in_flight_starts_no_handler_and_puts_the_job_back(
    make_queue: QueueFactory, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The runner is told to stop while a claim statement is on its way to SQL: once the
    claim returns, its job must not start (the stop came first); it is put back once
    (``todo``, no attempt used), and the runner exits having left nothing running."""
    queue = make_queue(database_url=proxy.url())
    started: list[float] = []

    @queue.task
    async def work() -> None:
        started.append(time.monotonic())
        await asyncio.sleep(5)

    await queue.connect()
    runner = Runner(queue, RunnerConfig(concurrency=5, shutdown_grace=0.2, handle_signals=False))
    proxy.arm(CLAIM, "stall")
    task = asyncio.ensure_future(runner.run())
    await asyncio.wait_for(runner.started.wait(), 20)
    job = await work.enqueue()
    await asyncio.wait_for(proxy.hit.wait(), 10)  # its claim is in flight
    with caplog.at_level(logging.INFO, logger="aqueue"):
        runner.stop()
        stopped_at = time.monotonic()
        proxy.release.set()
        await asyncio.wait_for(task, 20)
    assert not started, f"a handler started {started[0] - stopped_at:.3f}s after the stop"
    info = await job.info()
    assert info.status is JobStatus.TODO and info.attempts == 0, info
    assert info.lease_owner is None, info


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_a_runner_started_while_the_database_is_down_waits_for_it(
    make_queue: QueueFactory, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner starting during a database outage (a deploy racing a restart) keeps
    trying, logging why, and starts once the database is back, instead of exiting."""
    direct = make_queue()

    @direct.task
    async def ping() -> str:
        return "pong"

    job = await ping.enqueue()
    behind = make_queue(database_url=proxy.url())
    behind.task(ping.fn)
    proxy.outage = 1.5
    proxy.go_down()
    runner = Runner(behind, RunnerConfig(burst=True, handle_signals=False))
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="aqueue"):
        await asyncio.wait_for(runner.run(), 30)
    assert "cannot reach the backend at startup" in caplog.text
    assert proxy.back.is_set() and time.monotonic() - t0 >= 1.0
    assert await job.result(timeout=5) == "pong"


@SQL_SERVERS
async def test_a_runner_gives_up_on_an_unreachable_database_after_its_startup_wait(
    make_queue: QueueFactory, proxy: FaultProxy
) -> None:
    behind = make_queue(database_url=proxy.url())
    proxy.outage = 30
    proxy.go_down()
    runner = Runner(behind, RunnerConfig(startup_wait=0.5, handle_signals=False))
    with pytest.raises(StoreError):
        await asyncio.wait_for(runner.run(), 20)


async def test_an_unexpected_error_recording_a_finish_is_retried_and_the_job_runs_once(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # An error the store did not map (a defect, a driver error not seen before) must not
    # end the job's task: the job would stay running in SQL, to be reclaimed and run
    # again after its lease.
    queue = make_queue()
    runs: list[int] = []

    @queue.task
    async def once(n: int) -> int:
        runs.append(n)
        return n

    job = await once.enqueue(7)
    be = await queue._backend()
    real_finish = be.store.finish_release
    raised: list[str] = []

    async def finish_failing_once(items, now):  # type: ignore[no-untyped-def]
        if not raised:
            raised.append("once")
            raise RuntimeError("unmapped driver error")
        return await real_finish(items, now)

    be.store.finish_release = finish_failing_once  # type: ignore[method-assign]
    runner = Runner(queue, RunnerConfig(burst=True, handle_signals=False))
    with caplog.at_level(logging.ERROR, logger="aqueue"):
        await runner.run()
    assert await job.result(timeout=5) == 7
    assert runs == [7] and raised == ["once"]
    info = await job.info()
    assert (info.status, info.attempts, info.stalls) == (JobStatus.DONE, 1, 0)
    assert any("unmapped driver error" in r.getMessage() for r in caplog.records)
