"""Core round trips against real Redis and real MariaDB / SQLite."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aqueue import (
    Backoff,
    ConfigurationError,
    JobFailedError,
    JobStatus,
    PayloadTooLargeError,
    ResultTimeoutError,
    Runner,
    RunnerConfig,
    SerializationError,
    UnknownTaskError,
    current_job,
)

from ..conftest import QueueFactory

FAST = Backoff(base=0.01, cap=0.05, jitter=0)


def burst(queue: Any, **kw: Any) -> Runner:
    kw.setdefault("concurrency", 20)
    return Runner(queue, RunnerConfig(burst=True, handle_signals=False, **kw))


async def test_round_trip_with_results(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    job = await add.enqueue(2, 3)
    assert await job.status() is JobStatus.TODO
    other = await q.enqueue(add.name, a=10, b=5)
    await burst(q).run()
    assert await job.status() is JobStatus.DONE
    assert await job.result(timeout=5) == {"sum": 5}
    assert await other.result(timeout=5) == {"sum": 15}
    info = await job.info()
    assert info.attempts == 1
    assert info.finished_at is not None and info.finished_at >= info.created_at


async def test_task_still_callable(make_queue: QueueFactory) -> None:
    # (A plain ``def`` is a task too: it runs in the runner's thread pool, see test_sync.)
    q = make_queue()

    @q.task(retries=1, timeout=5)
    async def double(x: int) -> int:
        return x * 2

    assert await double(21) == 42


async def test_retries_then_failure_with_reason(make_queue: QueueFactory) -> None:
    q = make_queue()
    attempts: list[int] = []

    @q.task(retries=2, backoff=FAST)
    async def flaky() -> None:
        attempts.append(current_job().attempt)
        raise ValueError(f"bad attempt {current_job().attempt}")

    job = await flaky.enqueue()
    runner = burst(q)
    await runner.run()
    assert attempts == [1, 2, 3]
    assert await job.status() is JobStatus.FAILED
    with pytest.raises(JobFailedError) as err:
        await job.result(timeout=1)
    assert err.value.error_type == "ValueError"
    assert err.value.error_message == "bad attempt 3"
    assert "Traceback" in err.value.traceback
    assert (await job.info()).attempts == 3
    assert runner.stats.retried == 2 and runner.stats.failed == 1


async def test_retry_succeeds_and_no_retry_exceptions(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task(retries=3, backoff=FAST)
    async def second_time_lucky() -> int:
        if current_job().attempt < 2:
            raise RuntimeError("first")
        return current_job().attempt

    @q.task(retries=5, backoff=FAST, no_retry=[KeyError])
    async def fatal() -> None:
        raise KeyError("never retried")

    ok = await second_time_lucky.enqueue()
    bad = await fatal.enqueue()
    await burst(q).run()
    assert await ok.result(timeout=1) == 2
    with pytest.raises(JobFailedError, match="KeyError"):
        await bad.result(timeout=1)
    assert (await bad.info()).attempts == 1


async def test_timeout_fails_the_attempt(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task(retries=0, timeout=0.05)
    async def slow() -> None:
        await asyncio.sleep(30)

    job = await slow.enqueue()
    await burst(q).run()
    with pytest.raises(JobFailedError) as err:
        await job.result(timeout=1)
    assert err.value.error_type == "TimeoutError"
    assert "timed out after 0.05s" in err.value.error_message


async def test_result_timeout(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def never_run() -> None:
        return None

    job = await never_run.enqueue()
    with pytest.raises(ResultTimeoutError):
        await job.result(timeout=0.05)


async def test_delay_option(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def noop(x: int) -> int:
        return x

    job = await noop.options(delay=0.3).enqueue(1)
    now_job = await noop.enqueue(2)
    rec = await job.info()
    assert rec.run_at - rec.created_at >= 290_000
    await burst(q).run()
    assert await job.result(timeout=5) == 1
    assert await now_job.result(timeout=5) == 2
    done = await job.info()
    assert done.finished_at is not None and done.finished_at >= rec.run_at


async def test_options_do_not_collide_with_handler_kwargs(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def echo(delay: int, priority: str, job_id: str) -> list[Any]:
        return [delay, priority, job_id]

    job = await echo.enqueue(delay=5, priority="high", job_id="mine")
    await burst(q).run()
    assert await job.result(timeout=1) == [5, "high", "mine"]


async def test_explicit_job_id_is_idempotent(make_queue: QueueFactory) -> None:
    q = make_queue()
    runs: list[str] = []

    @q.task
    async def once(x: int) -> int:
        runs.append(current_job().job_id)
        return x

    a = await once.options(job_id="order-42").enqueue(1)
    b = await once.options(job_id="order-42").enqueue(1)
    assert a.id == b.id == "order-42"
    await burst(q).run()
    assert runs == ["order-42"]
    assert (await q.counts())[JobStatus.DONE] == 1


async def test_unique_key_returns_existing_job(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def report(day: str) -> str:
        return day

    a = await report.options(unique_key="report:monday").enqueue("monday")
    b = await report.options(unique_key="report:monday").enqueue("monday")
    assert a.id == b.id
    assert sum((await q.counts()).values()) == 1


async def test_bad_input_at_enqueue_stores_nothing(make_queue: QueueFactory) -> None:
    q = make_queue(max_payload_bytes=1000)

    @q.task
    async def takes(x: Any) -> None:
        return None

    with pytest.raises(UnknownTaskError, match="nope"):
        await q.enqueue("nope", 1)
    with pytest.raises(SerializationError, match="JSON"):
        await takes.enqueue(object())
    with pytest.raises(SerializationError):
        await takes.enqueue({1, 2})
    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes=1000"):
        await takes.enqueue("x" * 2000)
    await takes.enqueue("fine")
    counts = await q.counts()
    assert sum(counts.values()) == 1
    with pytest.raises(ConfigurationError):
        await takes.options(delay=-1).enqueue(1)


def test_invalid_identifiers_are_refused() -> None:
    from aqueue import Queue

    with pytest.raises(ConfigurationError, match="table name"):
        Queue("x", table="jobs; DROP TABLE users")
    with pytest.raises(ConfigurationError, match="queue name"):
        Queue("bad name!")
    with pytest.raises(ConfigurationError, match="key prefix"):
        Queue("x", key_prefix="a b")


async def test_runner_fails_unknown_task_and_keeps_going(make_queue: QueueFactory) -> None:
    producer = make_queue(strict_tasks=False)
    worker = make_queue()

    @worker.task
    async def known() -> str:
        return "ok"

    ghost = await producer.enqueue("ghost_task", 1)
    ok = await producer.enqueue(known.name)
    await burst(worker).run()
    with pytest.raises(JobFailedError) as err:
        await ghost.result(timeout=1)
    assert err.value.error_type == "UnknownTaskError"
    assert "ghost_task" in err.value.error_message
    assert await ok.result(timeout=1) == "ok"


async def test_malformed_message_is_dropped_runner_keeps_going(
    make_queue: QueueFactory, redis_client: Any
) -> None:
    q = make_queue()

    @q.task
    async def fine() -> int:
        return 1

    job = await fine.enqueue()
    be = await q._backend()
    await redis_client.lpush(be.broker.keys.ready, b"\x00not json", b'{"v":1,"id":"x"}')
    newer = b'{"v":99,"id":"y","t":"fine","n":0,"m":1,"p":{"a":[],"k":{}}}'
    await redis_client.lpush(be.broker.keys.ready, newer)
    runner = burst(q)
    await runner.run()
    assert await job.result(timeout=1) == 1
    assert runner.stats.malformed == 2
    assert await redis_client.llen(be.broker.keys.ready) == 0
    # a newer format is left (delayed) for a newer runner, not failed or dropped
    assert await redis_client.zscore(be.broker.keys.delayed, newer) is not None


async def test_non_serializable_result_fails_the_job(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task(retries=3)
    async def returns_object() -> object:
        return object()

    job = await returns_object.enqueue()
    await burst(q).run()
    with pytest.raises(JobFailedError, match="SerializationError"):
        await job.result(timeout=1)
    assert (await job.info()).attempts == 1


async def test_hooks_and_middleware(make_queue: QueueFactory) -> None:
    q = make_queue()
    events: list[str] = []

    @q.on_startup
    async def start(state: dict[str, Any]) -> None:
        state["db"] = "pool"
        events.append("startup")

    @q.on_shutdown
    async def stop(state: dict[str, Any]) -> None:
        events.append(f"shutdown:{state['db']}")

    @q.before_job
    async def before(ctx: Any) -> None:
        events.append(f"before:{ctx.task}")

    @q.after_job
    async def after(ctx: Any, status: JobStatus, exc: BaseException | None) -> None:
        events.append(f"after:{status.value}:{type(exc).__name__ if exc else None}")

    @q.middleware
    async def outer(ctx: Any, call_next: Any) -> Any:
        events.append("outer-in")
        result = await call_next()
        events.append("outer-out")
        return result

    @q.middleware
    async def inner(ctx: Any, call_next: Any) -> Any:
        events.append("inner-in")
        return {"wrapped": await call_next()}

    @q.task(retries=0)
    async def work() -> str:
        events.append(f"work:{current_job().state['db']}")
        return "r"

    job = await work.enqueue()
    await burst(q).run()
    assert await job.result(timeout=1) == {"wrapped": "r"}
    assert events == [
        "startup",
        "before:work",
        "outer-in",
        "inner-in",
        "work:pool",
        "outer-out",
        "after:done:None",
        "shutdown:pool",
    ]


async def test_concurrent_producers_no_loss_no_duplicates(
    make_queue: QueueFactory, backend: str
) -> None:
    total = 10_000 if backend == "mysql" else 3_000
    q = make_queue()
    seen: dict[int, int] = {}

    @q.task
    async def record(n: int) -> None:
        seen[n] = seen.get(n, 0) + 1

    async def producer(p: int) -> list[str]:
        per = total // 100
        return [(await record.enqueue(p * per + i)).id for i in range(per)]

    ids = [i for chunk in await asyncio.gather(*(producer(p) for p in range(100))) for i in chunk]
    assert len(set(ids)) == total
    runner = burst(q, concurrency=100)
    await runner.run()
    assert sorted(seen) == list(range(total))
    assert set(seen.values()) == {1}
    counts = await q.counts()
    assert counts[JobStatus.DONE] == total
    assert sum(counts.values()) == total


async def test_graceful_stop_puts_back_exactly_once(
    make_queue: QueueFactory, redis_client: Any
) -> None:
    q = make_queue()
    started = asyncio.Event()
    runs: list[str] = []
    release = asyncio.Event()

    @q.task
    async def slow() -> str:
        runs.append(current_job().job_id)
        if len(runs) >= 5:
            started.set()
        await release.wait()
        return "ok"

    jobs = [await slow.enqueue() for _ in range(5)]
    runner = Runner(q, RunnerConfig(concurrency=10, shutdown_grace=0.05, handle_signals=False))
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), 30)
    runner.stop()
    await asyncio.wait_for(task, 10)
    for j in jobs:
        info = await j.info()
        assert info.status is JobStatus.TODO
        assert info.attempts == 0
    be = await q._backend()
    ready = await redis_client.lrange(be.broker.keys.ready, 0, -1)
    assert sorted(json.loads(m)["id"] for m in ready) == sorted(j.id for j in jobs)
    assert await redis_client.llen(be.broker.keys.working(runner.id)) == 0
    assert runner.stats.released == 5
    # one further run each
    runs.clear()
    release.set()
    await burst(q).run()
    assert sorted(runs) == sorted(j.id for j in jobs)
    for j in jobs:
        assert await j.result(timeout=1) == "ok"
        assert (await j.info()).attempts == 1


async def test_a_stop_past_the_grace_records_an_outcome_on_its_way_to_sql(
    make_queue: QueueFactory,
) -> None:
    """A job whose handler is done when the grace runs out, its outcome waiting (here
    lingering a second) to share a SQL statement, is recorded: not cancelled, withdrawn
    and put back as if it had not run (it would run again)."""
    q = make_queue()
    returned = asyncio.Event()
    runs: list[int] = []

    @q.task
    async def quick(n: int) -> int:
        runs.append(n)
        if n == 2:
            returned.set()
        return n

    cfg = RunnerConfig(concurrency=10, shutdown_grace=0.05, finish_linger=1.0, handle_signals=False)
    runner = Runner(q, cfg)
    task = asyncio.create_task(runner.run())
    first = await quick.enqueue(1)  # the finisher's first outcome goes at once
    assert await first.result(timeout=30, poll=0.02) == 1
    second = await quick.enqueue(2)
    await asyncio.wait_for(returned.wait(), 30)
    runner.stop()  # while 2's outcome lingers, past the 0.05 s grace
    await asyncio.wait_for(task, 30)
    info = await second.info()
    assert (info.status, info.attempts, runner.stats.released) == (JobStatus.DONE, 1, 0)
    assert await second.result(timeout=1) == 2
    assert runs == [1, 2]


async def test_timeout_holds_for_a_handler_that_swallows_cancellation(
    make_queue: QueueFactory,
) -> None:
    from aqueue._runner import execute

    q = make_queue()
    stop = asyncio.Event()

    @q.task(retries=0, timeout=0.05)
    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # swallows every cancellation

    @q.task
    async def quick() -> str:
        return "ok"

    old = execute.ABANDON_AFTER
    execute.ABANDON_AFTER = 0.05
    try:
        bad = await stubborn.enqueue()
        good = await quick.enqueue()
        await burst(q, concurrency=1).run()
    finally:
        execute.ABANDON_AFTER = old
        stop.set()
    with pytest.raises(JobFailedError, match=r"timed out after 0\.05s"):
        await bad.result(timeout=1)
    assert await good.result(timeout=1) == "ok"
