"""A short SQL outage that cuts an open claim's COMMIT: the job still runs once.

An idle runner starts a job once its claim statement has run, while the claim's commit
is on its way (an *open* claim). Here a TCP proxy in front of MariaDB or PostgreSQL drops
that COMMIT, aborts every connection through it and refuses new ones for 0.2 to 1 s, as a
server killed and restarted would. SQL is back long before the runner's local deadline, so each
handler's outcome must be recorded exactly once, and no job may run twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter

import pytest

from aqueue import JobStatus, Runner, RunnerConfig

from ..chaos.harness import wait_for
from ..conftest import QueueFactory
from .sqlproxy import COMMIT, FaultProxy, fault_proxy

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
