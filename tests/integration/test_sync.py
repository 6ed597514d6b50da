"""Sync handlers (plain ``def`` tasks run in the runner's thread pool) and the sync
producer API (``enqueue_sync``, ``enqueue_many_sync``, ``result_sync``) from a Flask view,
from 20 threads at once and across a fork; on every store."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from aqueue import (
    ConfigurationError,
    JobFailedError,
    JobStatus,
    Queue,
    Runner,
    RunnerConfig,
    current_job,
)
from aqueue._sync import run_sync

from ..conftest import QueueFactory

DEADLINE = 20.0


async def wait_for(predicate: Any, what: str, deadline: float = DEADLINE) -> None:
    """Poll a condition with a deadline (the runner's work is observed, not slept on)."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def start(q: Queue, **config: Any) -> tuple[Runner, asyncio.Task[None]]:
    config.setdefault("concurrency", 4)
    runner = Runner(q, RunnerConfig(handle_signals=False, **config))
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.started.wait(), DEADLINE)
    return runner, task


async def stop(runner: Runner, task: asyncio.Task[None]) -> None:
    runner.stop()
    await asyncio.wait_for(task, DEADLINE)


async def close_sync(q: Queue) -> None:
    """A queue used through the sync API has its backend on the background loop: close
    it there."""
    await asyncio.to_thread(run_sync, q.close)


# -- sync handlers ---------------------------------------------------------------------


async def test_a_sync_handler_runs_in_a_thread_without_blocking_the_loop(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    gate = threading.Event()
    seen: dict[str, Any] = {}

    @q.task
    def blocking(x: int) -> int:
        ctx = current_job()  # the job's context is copied into the thread
        seen["job"] = ctx.job_id
        seen["thread"] = threading.current_thread().name
        # Blocks until the async job below has run: it could not if this blocked the loop.
        assert gate.wait(DEADLINE)
        return x * 2

    @q.task
    async def opener() -> None:
        gate.set()

    job = await blocking.enqueue(21)
    await opener.enqueue()
    runner, task = await start(q)
    try:
        assert await job.result(timeout=DEADLINE) == 42
    finally:
        await stop(runner, task)
    assert seen["job"] == job.id
    assert seen["thread"].startswith("aqueue-handler")
    assert blocking.is_sync and not opener.is_sync


async def test_sync_handlers_run_at_most_threads_at_once(make_queue: QueueFactory) -> None:
    q = make_queue()
    lock = threading.Lock()
    active, peak = [0], [0]

    @q.task
    def work(i: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)  # the handler's own blocking work
        with lock:
            active[0] -= 1
        return i

    jobs = await q.enqueue_many([(work, (i,), {}) for i in range(8)])
    runner = Runner(q, RunnerConfig(burst=True, handle_signals=False, concurrency=8, threads=2))
    await asyncio.wait_for(runner.run(), DEADLINE)
    assert [await j.result(timeout=1) for j in jobs] == list(range(8))
    assert peak[0] == 2


async def test_a_timed_out_sync_handler_fails_its_attempt_and_keeps_its_thread(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    release = threading.Event()
    returned = threading.Event()

    @q.task(retries=0, timeout=0.2)
    def stuck() -> None:
        release.wait(DEADLINE)
        returned.set()

    job = await stuck.enqueue()
    runner, task = await start(q, threads=1)
    try:
        with pytest.raises(JobFailedError) as err:
            await job.result(timeout=DEADLINE)
        assert err.value.error_type == "TimeoutError"
        # The attempt is failed while the function still runs: its thread is kept.
        assert not returned.is_set()
        assert runner._threads.running_jobs() == {job.id}
        release.set()
        await wait_for(lambda: not runner._threads.running_jobs(), "the thread to return")
    finally:
        release.set()
        await stop(runner, task)
    assert (await job.info()).attempts == 1


async def test_a_sync_handler_enqueues_through_the_runners_loop(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    def child(x: int) -> int:
        return x + 1

    @q.task
    def parent(x: int) -> str:
        return child.enqueue_sync(x).id

    job = await parent.enqueue(1)
    runner, task = await start(q)
    try:
        child_id = await job.result(timeout=DEADLINE)
        assert await q.job(child_id).result(timeout=DEADLINE) == 2
        assert q._be is not None and q._be.loop is asyncio.get_running_loop()
    finally:
        await stop(runner, task)


# -- sync producer ----------------------------------------------------------------------


@pytest.fixture
async def served(make_queue: QueueFactory) -> AsyncIterator[tuple[Queue, Queue]]:
    """A producer queue (used only through the sync API, as a WSGI app would) and a
    runner of the same queue in this loop."""
    producer = make_queue()
    worker = make_queue()
    for q in (producer, worker):

        @q.task(name="add")
        async def add(a: int, b: int) -> int:
            return a + b

    runner, task = await start(worker)
    try:
        yield producer, worker
    finally:
        await stop(runner, task)
        await close_sync(producer)


async def test_enqueue_sync_and_result_sync_from_a_flask_view(
    served: tuple[Queue, Queue],
) -> None:
    from flask import Flask, jsonify, request

    producer, _ = served
    add = producer.tasks["add"]
    app = Flask(__name__)

    @app.get("/add")
    def view() -> Any:
        a, b = int(request.args["a"]), int(request.args["b"])
        job = add.enqueue_sync(a, b)
        return jsonify(id=job.id, sum=job.result_sync(timeout=DEADLINE))

    @app.post("/batch")
    def batch() -> Any:
        jobs = producer.enqueue_many_sync([("add", (i, i), {}) for i in range(10)])
        return jsonify([j.result_sync(timeout=DEADLINE) for j in jobs])

    client = app.test_client()
    got = await asyncio.to_thread(client.get, "/add?a=2&b=3")
    assert got.status_code == 200 and got.json is not None and got.json["sum"] == 5
    got = await asyncio.to_thread(client.post, "/batch")
    assert got.json == [2 * i for i in range(10)]
    by_name = await asyncio.to_thread(producer.enqueue_sync, "add", 1, 1)
    assert await asyncio.to_thread(by_name.result_sync, DEADLINE) == 2
    bound = producer.options(priority=1)
    assert (await asyncio.to_thread(bound.enqueue_sync, "add", 0, 1)).id


async def test_the_sync_api_from_20_threads_at_once(served: tuple[Queue, Queue]) -> None:
    producer, _ = served
    add = producer.tasks["add"]
    start_together = threading.Barrier(20)

    def client(i: int) -> list[int]:
        start_together.wait(DEADLINE)
        one = add.enqueue_sync(i, 1)
        many = producer.enqueue_many_sync([("add", (i, k), {}) for k in range(3)])
        return [one.result_sync(timeout=DEADLINE)] + [j.result_sync(timeout=DEADLINE) for j in many]

    def all_clients() -> list[list[int]]:
        with ThreadPoolExecutor(20) as pool:
            return list(pool.map(client, range(20)))

    results = await asyncio.to_thread(all_clients)
    assert results == [[i + 1, i, i + 1, i + 2] for i in range(20)]


def _child(producer: Queue, out: Any) -> None:
    try:
        job = producer.enqueue_sync("add", 40, 2)
        out.put(("ok", job.result_sync(timeout=DEADLINE), job.info_sync().status.value))
    except BaseException as exc:
        out.put(("error", repr(exc), ""))


async def test_the_sync_api_across_a_fork(served: tuple[Queue, Queue]) -> None:
    producer, _ = served
    # The parent has used its background loop and connected the queue on it first.
    first = await asyncio.to_thread(producer.enqueue_sync, "add", 1, 2)
    assert await asyncio.to_thread(first.result_sync, DEADLINE) == 3
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    with warnings.catch_warnings():
        # Python 3.12+ warns of fork() in a process with threads, as gunicorn does it.
        warnings.simplefilter("ignore", DeprecationWarning)
        proc = ctx.Process(target=_child, args=(producer, out))
        proc.start()
    try:
        got = await asyncio.to_thread(out.get, True, DEADLINE)
    finally:
        await asyncio.to_thread(proc.join, DEADLINE)
    assert got == ("ok", 42, JobStatus.DONE.value)
    assert proc.exitcode == 0
    # The parent's loop and backend still work after the child made its own.
    again = await asyncio.to_thread(producer.enqueue_sync, "add", 2, 2)
    assert await asyncio.to_thread(again.result_sync, DEADLINE) == 4


async def test_a_sync_call_inside_a_running_loop_is_refused(make_queue: QueueFactory) -> None:
    q = make_queue()
    with pytest.raises(ConfigurationError, match="running event loop"):
        q.enqueue_sync("anything")
