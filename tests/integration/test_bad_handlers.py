"""Bad handlers are contained: whatever a handler, a hook or a middleware raises, its job's
attempt fails with a readable error, and the runner goes on with other jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aqueue import Backoff, JobFailedError, JobStatus, Queue, Runner, RunnerConfig

from ..conftest import QueueFactory

FAST = Backoff(base=0.01, cap=0.05, jitter=0)
PROMPT = 20.0
"""Seconds a burst runner gets to drain its few jobs (a stalled job would keep it running
until its lease ran out and the reclaimer took it)."""


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of a bad exception")


async def drain(q: Queue) -> Runner:
    runner = Runner(q, RunnerConfig(burst=True, handle_signals=False, concurrency=4))
    await asyncio.wait_for(runner.run(), PROMPT)
    return runner


async def failure(job: Any) -> JobFailedError:
    with pytest.raises(JobFailedError) as err:
        await job.result(timeout=1)
    return err.value


async def test_an_exception_whose_str_raises_fails_the_job_with_a_placeholder(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()

    @q.task(retries=0)
    async def bad() -> None:
        raise UnprintableError

    job = await bad.enqueue()
    await drain(q)
    err = await failure(job)
    assert err.status == "failed"
    assert err.error_type == "UnprintableError"
    assert err.error_message == "<exception str() failed>"
    assert "UnprintableError" in err.traceback


async def test_an_error_message_with_a_lone_surrogate_is_recorded(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()

    @q.task(retries=0)
    async def bad() -> None:
        raise ValueError("bytes \udc80 decoded with surrogateescape")

    job = await bad.enqueue()
    await drain(q)
    err = await failure(job)
    assert err.error_message == "bytes \\udc80 decoded with surrogateescape"


@pytest.mark.parametrize(
    "exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit, asyncio.CancelledError]
)
@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "timeout"])
async def test_a_base_exception_from_a_handler_fails_its_attempt_and_the_runner_goes_on(
    make_queue: QueueFactory, exc_type: type[BaseException], timeout: float | None
) -> None:
    q = make_queue()

    @q.task(retries=1, backoff=FAST, timeout=timeout)
    async def bad() -> None:
        raise exc_type("from the handler")

    @q.task
    async def good(i: int) -> int:
        return i

    bad_job = await bad.enqueue()
    good_jobs = [await good.enqueue(i) for i in range(3)]
    runner = await drain(q)
    err = await failure(bad_job)
    assert err.error_type == exc_type.__qualname__
    assert err.error_message == "from the handler"
    info = await bad_job.info()
    # a failure like any other: retried under the task's policy, each attempt counted
    assert info.attempts == 2 and info.stalls == 0
    assert runner.stats.failed == 1
    assert [await j.result(timeout=1) for j in good_jobs] == [0, 1, 2]


async def test_a_base_exception_from_a_before_job_hook_or_a_middleware_fails_the_job(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()

    @q.before_job
    async def before(ctx: Any) -> None:
        if ctx.task == "exit_before":
            raise SystemExit(3)

    @q.middleware
    async def interrupting(ctx: Any, call_next: Any) -> Any:
        if ctx.task == "interrupt_in_middleware":
            raise KeyboardInterrupt
        return await call_next()

    @q.task(retries=0, name="exit_before")
    async def exit_before() -> None:
        return None

    @q.task(retries=0, name="interrupt_in_middleware")
    async def interrupt_in_middleware() -> None:
        return None

    @q.task
    async def good() -> str:
        return "ok"

    a, b = await exit_before.enqueue(), await interrupt_in_middleware.enqueue()
    ok = await good.enqueue()
    await drain(q)
    assert (await failure(a)).error_type == "SystemExit"
    assert (await failure(b)).error_type == "KeyboardInterrupt"
    assert await ok.result(timeout=1) == "ok"


async def test_a_base_exception_from_an_after_job_hook_does_not_stop_the_runner(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()

    @q.after_job
    async def after(ctx: Any, status: JobStatus, exc: BaseException | None) -> None:
        if ctx.task == "first":
            raise SystemExit(3)

    @q.task(name="first")
    async def first() -> int:
        return 1

    @q.task
    async def second() -> int:
        return 2

    j1 = await first.enqueue()
    j2 = await second.enqueue()
    await drain(q)
    assert await j1.result(timeout=1) == 1
    assert await j2.result(timeout=1) == 2
