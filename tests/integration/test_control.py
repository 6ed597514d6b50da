"""Manual commit (Meepo's auto/manual commit), fencing, and repush."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aqueue import (
    Backoff,
    CommitError,
    JobError,
    JobFailedError,
    JobStatus,
    Runner,
    RunnerConfig,
    current_job,
)

from ..conftest import QueueFactory


def burst(queue: Any, **kw: Any) -> Runner:
    return Runner(queue, RunnerConfig(burst=True, handle_signals=False, **kw))


async def test_manual_commit_done_failed_todo(make_queue: QueueFactory) -> None:
    q = make_queue()
    seen: list[tuple[str, int]] = []

    @q.task(auto_commit=False)
    async def manual(kind: str) -> None:
        ctx = current_job()
        seen.append((kind, ctx.attempt))
        if kind == "done":
            await ctx.commit("done", result={"ok": True})
        elif kind == "failed":
            await ctx.commit("failed", error="bad data")
        elif ctx.attempt == 1:
            await ctx.commit("todo", delay=0.01)
        else:
            await ctx.commit(JobStatus.DONE, result=ctx.attempt)
        with pytest.raises(CommitError, match="already committed"):
            await ctx.commit("done")

    done = await manual.enqueue("done")
    failed = await manual.enqueue("failed")
    again = await manual.enqueue("again")
    await burst(q).run()
    assert await done.result(timeout=1) == {"ok": True}
    with pytest.raises(JobFailedError, match="bad data"):
        await failed.result(timeout=1)
    assert await again.result(timeout=1) == 2
    assert sorted(seen) == [("again", 1), ("again", 2), ("done", 1), ("failed", 1)]


async def test_commit_in_auto_mode_is_an_error(make_queue: QueueFactory) -> None:
    q = make_queue()
    errors: list[str] = []

    @q.task(retries=0)
    async def auto() -> str:
        try:
            await current_job().commit("done")
        except CommitError as exc:
            errors.append(str(exc))
        return "returned"

    job = await auto.enqueue()
    await burst(q).run()
    assert await job.result(timeout=1) == "returned"
    assert "auto_commit=False" in errors[0]


async def test_commit_from_outside_the_handler_with_the_token(make_queue: QueueFactory) -> None:
    q = make_queue()
    handed: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    @q.task(auto_commit=False)
    async def hand_off() -> None:
        ctx = current_job()
        await handed.put((ctx.job_id, ctx.lease_token))  # commit happens elsewhere

    job = await hand_off.enqueue()
    runner = Runner(q, RunnerConfig(handle_signals=False, lease=5, heartbeat=1))
    task = asyncio.create_task(runner.run())
    job_id, token = await asyncio.wait_for(handed.get(), 10)
    with pytest.raises(CommitError, match="rejected"):
        await q.commit(job_id, "not-the-token", "done")
    await q.commit(job_id, token, "done", result=41)
    with pytest.raises(CommitError):
        await q.commit(job_id, token, "done", result=42)  # only one outcome per job
    runner.stop()
    await asyncio.wait_for(task, 10)
    assert await job.result(timeout=1) == 41


async def test_uncommitted_manual_job_is_reclaimed_after_its_lease(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    runs: list[int] = []

    @q.task(auto_commit=False)
    async def forgetful() -> None:
        ctx = current_job()
        runs.append(ctx.attempt)
        if len(runs) > 1:
            await ctx.commit("done", result="second time")

    job = await forgetful.enqueue()
    cfg = RunnerConfig(
        handle_signals=False, lease=1.0, heartbeat=0.3, reclaim_period=0.2, max_stalls=5
    )
    runner = Runner(q, cfg)
    task = asyncio.create_task(runner.run())
    try:
        assert await job.result(timeout=15) == "second time"
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)
    info = await job.info()
    assert info.stalls == 1
    assert len(runs) == 2


async def test_repush_failed_job_and_running_needs_force(make_queue: QueueFactory) -> None:
    q = make_queue()
    fail = True
    started = asyncio.Event()
    release = asyncio.Event()

    @q.task(retries=0, backoff=Backoff(base=0.01, jitter=0))
    async def flaky() -> str:
        if fail:
            raise ValueError("first")
        return "fixed"

    @q.task
    async def slow() -> str:
        started.set()
        await release.wait()
        return "slow done"

    job = await flaky.enqueue()
    await burst(q).run()
    assert await job.status() is JobStatus.FAILED
    fail = False
    await q.repush(job.id)
    info = await job.info()
    assert (info.status, info.attempts, info.error) == (JobStatus.TODO, 0, None)
    await burst(q).run()
    assert await job.result(timeout=1) == "fixed"

    sj = await slow.enqueue()
    runner = Runner(q, RunnerConfig(handle_signals=False, lease=3, heartbeat=0.2))
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 10)
    with pytest.raises(JobError, match="force=True"):
        await q.repush(sj.id)
    started.clear()
    await q.repush(sj.id, force=True)
    # The old run is cancelled at the next renewal; the new one starts only after the
    # old lease would have ended.
    await asyncio.wait_for(started.wait(), 15)
    release.set()
    assert await sj.result(timeout=10) == "slow done"
    runner.stop()
    await asyncio.wait_for(task, 10)
    assert runner.stats.finishes_rejected == 0


async def test_sweeper_sends_stalled_jobs_to_the_suspect_lanes_and_spares_fresh_writes(
    make_queue: QueueFactory, redis_client: Any
) -> None:
    """A job that was running when its runner died must never be re-dispatched into a
    ready list, where it would run beside other jobs (if it is a poison job, they would be
    charged with its stalls); and a row written a moment ago is being pushed by its
    writer, so the sweeper leaves it alone."""
    from aqueue._ids import now_us
    from aqueue._message import decode_message
    from aqueue._runner.recovery import SweepCursor, sweep_pass

    q = make_queue()

    @q.task
    async def noop() -> None:
        return None

    plain, once, twice, fresh = [(await noop.enqueue()).id for _ in range(4)]
    be = await q._backend()
    store = be.store
    # wait for the enqueues' own dispatch marks, so they cannot land after the edits below
    unmarked = f"SELECT COUNT(*) FROM {store.sql.t} WHERE dispatched_at IS NULL"
    deadline = asyncio.get_running_loop().time() + 10
    while (await store.db.fetch(unmarked))[0][0]:
        assert asyncio.get_running_loop().time() < deadline, "dispatch marks never landed"
        await asyncio.sleep(0.01)
    keys = be.broker.keys
    await redis_client.delete(keys.ready, keys.suspects, keys.suspects_alone)
    old = now_us() - 10_000_000
    b = store.sql.bind
    for job_id, stalls, written in ((plain, 0, old), (once, 1, old), (twice, 2, old)):
        params: list[object] = []
        sql = (
            f"UPDATE {store.sql.t} SET stalls = {b(params, stalls)}, "
            f"updated_at = {b(params, written)}, dispatched_at = NULL "
            f"WHERE id = {b(params, job_id)}"
        )
        assert await store.db.execute(sql, params) == 1
    params = []
    sql = (
        f"UPDATE {store.sql.t} SET dispatched_at = NULL, updated_at = {b(params, now_us())} "
        f"WHERE id = {b(params, fresh)}"
    )
    assert await store.db.execute(sql, params) == 1

    cfg = RunnerConfig(max_stalls=3)
    swept = await sweep_pass(be, now_us, cfg, SweepCursor(), grace=5.0, limit=100)
    assert swept == 3

    async def ids(key: str) -> list[str]:
        return [decode_message(m).id for m in await redis_client.lrange(key, 0, -1)]

    assert await ids(keys.ready) == [plain]
    assert await ids(keys.suspects) == [once]
    assert await ids(keys.suspects_alone) == [twice]
    # run by a runner: each exactly once, the stalled ones through their lanes
    await burst(q).run()
    for job_id in (plain, once, twice, fresh):
        assert (await q.job(job_id).status()) is JobStatus.DONE
