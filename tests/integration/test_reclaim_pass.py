"""The reclaim pass's own guard against a pause of its process while it waited for the
reclaim lock: asked just before the clock is read, it ends the pass with nothing taken
(the other runners may have been paused too and not have renewed yet)."""

from __future__ import annotations

from aqueue import JobStatus, RunnerConfig
from aqueue._ids import now_us
from aqueue._runner.recovery import reclaim_pass

from ..conftest import QueueFactory
from ..contract.helpers import claim, new


async def test_a_pass_not_in_time_takes_nothing_and_the_next_one_does(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    be = await q._backend()
    now = now_us()
    job = new(queue=be.queue_name)
    await be.store.insert_jobs([job], now)
    await be.store.claim(claim([job.id], "tok", now=now, lease=10))  # expired at once
    cfg = RunnerConfig()
    asked: list[bool] = []

    def not_in_time() -> bool:
        asked.append(False)
        return False

    assert await reclaim_pass(be, now_us, cfg, "me", in_time=not_in_time) == 0
    assert asked == [False]
    row = await be.store.get_job(job.id)
    assert row is not None and (row.status, row.lease_token) == (JobStatus.RUNNING, "tok")
    # The lock was given back: the next pass (in time) takes the expired lease.
    assert await reclaim_pass(be, now_us, cfg, "me") == 1
    row = await be.store.get_job(job.id)
    assert row is not None and (row.status, row.stalls) == (JobStatus.TODO, 1)
