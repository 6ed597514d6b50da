"""Short SQL outages at a runner's commits, made by a TCP proxy in front of MariaDB or
PostgreSQL that drops a statement, aborts every connection through it and refuses new
ones for a while, as a server killed and restarted would.

- At an open claim's COMMIT: an idle runner starts a job once its claim statement has
  run, while the claim's commit is on its way. SQL is back long before the runner's local
  deadline, so each handler's outcome must be recorded exactly once, and no job may run
  twice.
- At a finish, for longer than the local deadline: past it a runner must assume its
  leases are gone and cancels the handlers still running. A job whose handler already
  ended has nothing left to stop: its outcome is fenced by the lease token, so the runner
  keeps trying to record it. SQL comes back before anyone reclaimed the job, so the
  outcome is recorded once and the job never runs again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aqueue import JobStatus, Runner, RunnerConfig

from ..chaos.harness import wait_for
from ..conftest import QueueFactory
from .sqlproxy import COMMIT, FINISH, FaultProxy, fault_proxy, work_behind

SQL_SERVERS = pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)

outage_proxy = pytest.fixture(fault_proxy)


@SQL_SERVERS
@pytest.mark.timeout(120)
async def test_sql_outage_at_claim_commit_never_runs_a_job_twice(
    make_queue: QueueFactory, outage_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    rnd = random.Random(16)
    direct = make_queue()
    cut = make_queue(database_url=outage_proxy.url())
    runs: list[str] = []

    @direct.task
    async def work(n: int) -> int:
        runs.append(f"{n}")
        await asyncio.sleep(0.02)
        return n

    cut.task(work.fn)
    await cut.connect()
    # Lease 6 s: the local deadline is 4 s after the last acknowledged renewal. A
    # renewal is up to a heartbeat old when an outage (at most 1 s) starts, and the
    # renewals retried during it back off, so SQL is back well before the deadline, on
    # a loaded machine too.
    runner = Runner(cut, RunnerConfig(concurrency=10, lease=6, heartbeat=1, handle_signals=False))
    task = asyncio.ensure_future(runner.run())
    await asyncio.wait_for(runner.started.wait(), 20)
    outages = 8
    jobs = []
    numbers = itertools.count()

    async def all_done() -> bool:
        counts = await direct.counts()
        return counts.get(JobStatus.DONE, 0) == len(jobs)

    with caplog.at_level(logging.INFO, logger="aqueue.runner"):
        for i in range(outages):
            outage_proxy.outage = rnd.uniform(0.2, 1.0)
            outage_proxy.arm(COMMIT, "outage")
            # a trickle: each job's claim is an open one, until one COMMIT is cut
            n = 0
            while outage_proxy.cuts <= i:
                jobs.append(await work.enqueue(next(numbers)))
                n += 1
                assert n < 200, "no claim COMMIT went through the proxy"
                await asyncio.sleep(0.005)
            await asyncio.wait_for(outage_proxy.back.wait(), 5)
            jobs.extend([await work.enqueue(next(numbers)) for _ in range(5)])
            # one outage at a time: the next cut once everything so far is recorded
            await wait_for(all_done, 30, f"all jobs done after outage {i + 1}")
        runner.stop()
        await asyncio.wait_for(task, 30)

    assert outage_proxy.cuts == outages
    twice = {n: c for n, c in Counter(runs).items() if c > 1}
    assert not twice, f"ran more than once: {twice}\n{caplog.text[-3000:]}"
    assert len(runs) == len(jobs)
    assert runner.stats.finishes_rejected == 0, caplog.text[-3000:]
    assert "claimed again" in caplog.text or "committed after all" in caplog.text
    for job in jobs:
        info = await job.info()
        assert info.status is JobStatus.DONE and info.attempts == 1, info


@asynccontextmanager
async def runner_behind(
    make_queue: QueueFactory, proxy: FaultProxy, config: RunnerConfig
) -> AsyncIterator[tuple[Any, list[int], Runner]]:
    """A runner whose SQL is reached through ``proxy``, started, with the task ``work``
    of :func:`work_behind`."""
    cut, work, runs = work_behind(make_queue, proxy.url())
    await cut.connect()
    runner = Runner(cut, config)
    task = asyncio.ensure_future(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 20)
        yield work, runs, runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


@SQL_SERVERS
@pytest.mark.timeout(120)
async def test_an_outcome_held_back_past_the_local_deadline_is_recorded_once_sql_is_back(
    make_queue: QueueFactory, outage_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    # The local deadline is 2.5 s after the last acknowledged renewal and the lease in
    # SQL 7 s: an outage of 3.2 s always outlasts the first, and ends seconds before the
    # second could run out (the reclaimer then has nothing to take).
    config = RunnerConfig(
        concurrency=4, lease=7, lease_margin=4.5, heartbeat=1, handle_signals=False
    )
    async with runner_behind(make_queue, outage_proxy, config) as (work, runs, runner):
        outage_proxy.outage = 3.2
        outage_proxy.arm(FINISH, "outage")
        with caplog.at_level(logging.INFO, logger="aqueue.runner"):
            job = await work.enqueue(7)
            await asyncio.wait_for(outage_proxy.hit.wait(), 20)
            assert runs == [7]
            await wait_for(
                lambda: "before the local deadline; still trying" in caplog.text,
                20,
                "the runner to pass its local deadline with the outcome unrecorded",
            )
            assert await job.result(timeout=30) == 14
            info = await job.info()
            assert info.status is JobStatus.DONE and info.attempts == 1, info
            assert runs == [7], caplog.text[-3000:]
            assert runner.stats.finishes_rejected == 0
            assert "reclaimed" not in caplog.text


@SQL_SERVERS
@pytest.mark.timeout(120)
async def test_a_claim_cut_at_its_commit_for_longer_than_the_deadline_is_taken_again_late(
    make_queue: QueueFactory, outage_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The open claim's COMMIT is dropped and SQL stays away past the claim's local
    deadline (lease 3 s: 2 s after the claim). The handler has run meanwhile; the claim
    never committed, and the message never left this runner, so nobody else has the job:
    the runner takes the claim again once SQL is back and records the outcome, once."""
    config = RunnerConfig(concurrency=4, lease=3, heartbeat=1, handle_signals=False)
    async with runner_behind(make_queue, outage_proxy, config) as (work, runs, runner):
        outage_proxy.outage = 2.6
        outage_proxy.arm(COMMIT, "outage")
        with caplog.at_level(logging.INFO, logger="aqueue.runner"):
            jobs = []
            async with asyncio.timeout(20):  # a trickle until a claim's COMMIT is cut
                while not outage_proxy.hit.is_set():
                    jobs.append(await work.enqueue(len(jobs)))
                    await asyncio.sleep(0.02)
            await wait_for(
                lambda: "still claiming them again" in caplog.text,
                20,
                "the claim's local deadline to pass with SQL away",
            )
            for job in jobs:
                assert await job.result(timeout=30) == 2 * jobs.index(job)
                info = await job.info()
                assert info.status is JobStatus.DONE and info.attempts == 1, info
            assert sorted(runs) == list(range(len(jobs))), caplog.text[-3000:]
            assert runner.stats.finishes_rejected == 0
            assert "never committed: claimed again" in caplog.text
