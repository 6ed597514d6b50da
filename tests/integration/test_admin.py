"""Operators' reads and bulk actions through the client, on Redis and every SQL store:
find failed jobs by filter in pages, retry them all (they run again), cancel and delete
by filter, the backlog's age."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from aqueue import ConfigurationError, JobStatus, Runner, RunnerConfig

from ..conftest import QueueFactory


def burst(queue: Any) -> Runner:
    return Runner(queue, RunnerConfig(burst=True, handle_signals=False))


async def test_failed_jobs_found_by_filter_are_retried_and_run_again(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    healthy = asyncio.Event()
    runs: list[int] = []

    @q.task(retries=0)
    async def charge(n: int) -> int:
        runs.append(n)
        if not healthy.is_set():
            raise RuntimeError(f"gateway down <{n}>")
        return n * 10

    @q.task
    async def other() -> None:
        return None

    jobs = [await charge.enqueue(n) for n in range(7)]
    await other.enqueue()
    await burst(q).run()
    failed = q.job_query(status="failed", task="charge")
    # Newest first: by id, descending (ids are in creation order to the millisecond).
    newest_first = sorted((j.id for j in jobs), reverse=True)
    first = await q.find_jobs(failed, limit=4)
    assert [r.id for r in first] == newest_first[:4]
    rest = await q.find_jobs(q.job_query(status="failed", before_id=first[-1].id), limit=4)
    assert [r.id for r in rest] == newest_first[4:]
    found = await q.find_jobs(q.job_query(text="gateway down <3>"), limit=10)
    assert [r.id for r in found] == [jobs[3].id]

    healthy.set()
    assert await q.retry_jobs(query=failed) == 7
    assert (await q.counts())[JobStatus.TODO] == 7
    await burst(q).run()
    assert [await j.result(timeout=5) for j in jobs] == [n * 10 for n in range(7)]
    assert sorted(runs) == sorted([*range(7), *range(7)])
    assert await q.retry_jobs(query=failed) == 0


async def test_cancel_and_delete_by_filter_and_by_id(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def later(n: int) -> None:
        return None

    delayed = [await later.options(delay=3600).enqueue(n) for n in range(5)]
    assert await q.cancel_jobs(query=q.job_query(status="todo"), limit=3) == 3
    counts = await q.counts()
    assert (counts[JobStatus.CANCELLED], counts[JobStatus.TODO]) == (3, 2)
    # The newest three were cancelled: pages go newest first.
    for job_id in sorted(j.id for j in delayed)[2:]:
        assert (await q.job(job_id).info()).status is JobStatus.CANCELLED
    assert await q.delete_jobs(query=q.job_query(status="cancelled")) == 3
    assert await q.delete_jobs([min(j.id for j in delayed), "no-such-job"]) == 1
    assert sum((await q.counts()).values()) == 1
    with pytest.raises(ConfigurationError, match="either job ids or a query"):
        await q.delete_jobs()
    with pytest.raises(ConfigurationError, match="unknown job status"):
        q.job_query(status="finished")
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        q.job_query(created_from=datetime(2026, 1, 1))


async def test_created_range_and_backlog_age(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def t() -> None:
        return None

    assert await q.backlog_age() is None
    before = time.time()
    job = await t.enqueue()
    after = datetime.now(UTC)
    assert [r.id for r in await q.find_jobs(q.job_query(created_from=before - 1))] == [job.id]
    assert await q.find_jobs(q.job_query(created_to=before - 1)) == []
    assert [r.id for r in await q.find_jobs(q.job_query(created_to=after))] == [job.id]
    age = await q.backlog_age()
    assert age is not None and 0 <= age < 60
