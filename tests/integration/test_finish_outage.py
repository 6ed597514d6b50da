"""An SQL outage that holds a finished job's outcome back past the runner's local deadline.

Past its local deadline a runner must assume its leases are gone, and cancels the handlers
still running. A job whose handler already ended has nothing left to stop: its outcome is
fenced by the lease token, so the runner keeps trying to record it. Here SQL comes back
before anyone reclaimed the job, so the outcome is recorded once and the job never runs
again.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from aqueue import JobStatus, Runner, RunnerConfig

from ..chaos.harness import wait_for
from ..conftest import QueueFactory
from .sqlproxy import FINISH, FaultProxy, fault_proxy

SQL_SERVERS = pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)

outage_proxy = pytest.fixture(fault_proxy)


@SQL_SERVERS
@pytest.mark.timeout(120)
async def test_an_outcome_held_back_past_the_local_deadline_is_recorded_once_sql_is_back(
    make_queue: QueueFactory, outage_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    direct = make_queue()
    cut = make_queue(database_url=outage_proxy.url())
    runs: list[int] = []

    @direct.task
    async def work(n: int) -> int:
        runs.append(n)
        return n

    cut.task(work.fn)
    await cut.connect()
    # The local deadline is 2.5 s after the last acknowledged renewal and the lease in
    # SQL 7 s: an outage of 3.2 s always outlasts the first, and ends seconds before the
    # second could run out (the reclaimer then has nothing to take).
    config = RunnerConfig(
        concurrency=4, lease=7, lease_margin=4.5, heartbeat=1, handle_signals=False
    )
    runner = Runner(cut, config)
    task = asyncio.ensure_future(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 20)
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
            assert await job.result(timeout=30) == 7
            info = await job.info()
            assert info.status is JobStatus.DONE and info.attempts == 1, info
            assert runs == [7], caplog.text[-3000:]
            assert runner.stats.finishes_rejected == 0
            assert "reclaimed" not in caplog.text
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
