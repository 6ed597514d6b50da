"""``max_size`` counts exactly the jobs that can still run (``todo``, due or delayed):
never a refused enqueue, nor cancelled or finished jobs."""

from __future__ import annotations

import pytest

from aqueue import JobStatus, QueueFullError, Runner, RunnerConfig

from ..conftest import QueueFactory


async def test_a_refused_enqueue_many_is_not_counted_as_waiting(make_queue: QueueFactory) -> None:
    q = make_queue(max_size=5)

    @q.task
    async def t(i: int) -> None:
        return None

    for i in range(4):
        await t.enqueue(i)
    with pytest.raises(QueueFullError, match=r"\(4 waiting, max_size=5\)"):
        await q.enqueue_many([(t, (i,), {}) for i in range(3)])
    await t.enqueue(4)  # the fifth fits: the refused three were never stored
    with pytest.raises(QueueFullError, match=r"\(5 waiting, max_size=5\)"):
        await t.enqueue(5)
    assert (await q.counts())[JobStatus.TODO] == 5


async def test_cancelled_delayed_jobs_do_not_fill_the_queue(make_queue: QueueFactory) -> None:
    q = make_queue(max_size=5)

    @q.task
    async def t(i: int) -> None:
        return None

    jobs = [await t.options(delay=3600).enqueue(i) for i in range(5)]
    with pytest.raises(QueueFullError, match=r"\(5 waiting"):
        await t.enqueue(5)  # five delayed jobs are waiting: they can still run
    for job in jobs:
        assert await job.cancel()
    counts = await q.counts()
    assert (counts[JobStatus.TODO], counts[JobStatus.CANCELLED]) == (0, 5)
    # Right after the cancels (within the 0.2 s a count is reused): the refusal is made
    # on a fresh count, which holds none of them.
    fresh = [await t.enqueue(i) for i in range(5)]
    assert len(fresh) == 5
    with pytest.raises(QueueFullError, match=r"\(5 waiting"):
        await t.enqueue(99)


async def test_finished_jobs_make_room(make_queue: QueueFactory) -> None:
    q = make_queue(max_size=3)

    @q.task
    async def t(i: int) -> int:
        return i

    for i in range(3):
        await t.enqueue(i)
    with pytest.raises(QueueFullError):
        await t.enqueue(3)
    await Runner(q, RunnerConfig(burst=True, handle_signals=False)).run()
    assert (await q.counts())[JobStatus.DONE] == 3
    for i in range(3, 6):
        await t.enqueue(i)
    assert (await q.counts())[JobStatus.TODO] == 3
