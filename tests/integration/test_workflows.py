"""Dependencies and workflows through the public API, on every store (MariaDB, PostgreSQL,
SQLite): a dependant waits, is released by the finish of its last parent, is cancelled
when a parent fails (or runs anyway), and chain/group/chord pass results along."""

from __future__ import annotations

from typing import Any

import pytest

import aqueue
from aqueue import ConfigurationError, JobFailedError, JobStatus, Runner, RunnerConfig

from ..conftest import QueueFactory


def burst(queue: Any, **kw: Any) -> Runner:
    return Runner(queue, RunnerConfig(burst=True, handle_signals=False, **kw))


async def test_dependant_waits_and_is_released_by_its_parents(make_queue: QueueFactory) -> None:
    q = make_queue()
    order: list[str] = []

    @q.task
    async def step(name: str) -> str:
        order.append(name)
        return name

    a = await step.enqueue("a")
    b = await step.enqueue("b")
    child = await step.options(after=[a, b.id]).enqueue("child")
    info = await child.info()
    assert info.status is JobStatus.WAITING and info.parents_left == 2
    assert (await q.counts())[JobStatus.WAITING] == 1
    await burst(q).run()
    assert await child.result(timeout=5) == "child"
    assert order[-1] == "child" and sorted(order[:2]) == ["a", "b"]
    # a parent already done when the dependant is enqueued: it is todo at once
    late = await step.options(after=a).enqueue("late")
    assert (await late.info()).status is JobStatus.TODO
    await burst(q).run()
    assert await late.result(timeout=5) == "late"


async def test_failed_parent_cancels_the_dependant_with_the_reason(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    ran: list[str] = []

    @q.task(retries=0)
    async def boom() -> None:
        raise RuntimeError("boom")

    @q.task
    async def after(name: str) -> str:
        ran.append(name)
        return name

    parent = await boom.enqueue()
    doomed = await after.options(after=[parent]).enqueue("doomed")
    anyway = await after.options(after=[parent], after_failure="run").enqueue("anyway")
    await burst(q).run()
    with pytest.raises(JobFailedError) as err:
        await doomed.result(timeout=5)
    assert err.value.error_type == "DependencyFailed" and parent.id in str(err.value)
    assert (await doomed.info()).status is JobStatus.CANCELLED
    assert await anyway.result(timeout=5) == "anyway"
    assert ran == ["anyway"]
    # enqueued after the parent failed: cancelled at once (or run, if asked)
    again = await after.options(after=[parent]).enqueue("again")
    assert (await again.info()).status is JobStatus.CANCELLED
    with pytest.raises(ConfigurationError, match="does not exist"):
        await after.options(after=["no-such-job"]).enqueue("x")


async def test_chain_passes_each_result_to_the_next(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def add(x: int, y: int) -> int:
        return x + y

    @q.task
    async def double(x: int) -> int:
        return 2 * x

    last = await aqueue.chain(add.s(1, 2), double.s(), add.s(10)).enqueue()
    assert (await last.info()).status is JobStatus.WAITING
    await burst(q).run()
    assert await last.result(timeout=5) == 16  # (1 + 2) * 2 + 10


async def test_chord_callback_gets_every_result_once(make_queue: QueueFactory) -> None:
    q = make_queue()
    calls: list[list[int]] = []

    @q.task
    async def square(x: int) -> int:
        return x * x

    @q.task
    async def total(results: list[int], offset: int) -> int:
        calls.append(results)
        return sum(results) + offset

    members = aqueue.group(*(square.s(i) for i in range(20)))
    callback = await aqueue.chord(members, total.s(1000)).enqueue()
    await burst(q, concurrency=8).run()
    assert await callback.result(timeout=10) == sum(i * i for i in range(20)) + 1000
    assert calls == [[i * i for i in range(20)]]  # once, in the group's order
    jobs = await aqueue.group(square.s(2), square.s(3)).enqueue()
    await burst(q).run()
    assert [await j.result(timeout=5) for j in jobs] == [4, 9]


async def test_a_workflow_is_stored_whole_or_not_at_all(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def t(x: int) -> int:
        return x

    before = sum((await q.counts()).values())
    with pytest.raises(aqueue.SerializationError):
        await aqueue.chain(t.s(1), t.s(object())).enqueue()
    assert sum((await q.counts()).values()) == before


async def test_deleting_an_unrun_parent_settles_its_dependants(make_queue: QueueFactory) -> None:
    """A parent deleted before it ran: the job waiting on it is cancelled with the
    reason (one that runs after a failure is released instead), never left waiting."""
    q = make_queue()

    @q.task
    async def step(name: str) -> str:
        return name

    parent = await step.options(delay=3600).enqueue("parent")
    child = await step.options(after=[parent]).enqueue("child")
    anyway = await step.options(after=[parent], after_failure="run").enqueue("anyway")
    assert await q.delete_jobs([parent.id]) == 1
    with pytest.raises(aqueue.JobNotFoundError):
        await parent.info()
    info = await child.info()
    assert info is not None and info.status is JobStatus.CANCELLED, info
    assert parent.id in (info.error or ""), info.error
    released = await anyway.info()
    # released: the sweeper sends it, as for a parent cancelled by an operator
    assert released is not None and released.status is JobStatus.TODO, released
