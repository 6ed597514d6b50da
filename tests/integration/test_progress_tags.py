"""Progress (``current_job().progress``, throttled, fenced by the lease) and tags
(``options(tags=...)``, ``queue.jobs(tag=..., status=...)``) through a real runner, on
every store."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aqueue import ConfigurationError, JobStatus, Options, Queue, Runner, RunnerConfig, current_job

from ..conftest import QueueFactory

DEADLINE = 20.0


async def start(q: Queue) -> tuple[Runner, asyncio.Task[None]]:
    runner = Runner(q, RunnerConfig(handle_signals=False, concurrency=4))
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.started.wait(), DEADLINE)
    return runner, task


async def stop(runner: Runner, task: asyncio.Task[None]) -> None:
    runner.stop()
    await asyncio.wait_for(task, DEADLINE)


def count_progress_writes(q: Queue) -> list[tuple[float, str | None]]:
    """Every progress write the store receives (the queue's backend must be connected)."""
    assert q._be is not None
    store: Any = q._be.store
    real = store.set_progress
    writes: list[tuple[float, str | None]] = []

    async def spy(job_id: str, token: str, value: float, message: str | None) -> bool:
        writes.append((value, message))
        return bool(await real(job_id, token, value, message))

    store.set_progress = spy
    return writes


async def test_a_tight_loop_of_progress_writes_twice_and_keeps_the_last(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()

    @q.task
    async def resize(n: int) -> int:
        for i in range(1, n + 1):
            await current_job().progress(i / n, f"resized {i} of {n}")
        return n

    await q.connect()
    writes = count_progress_writes(q)
    job = await resize.enqueue(1000)
    runner, task = await start(q)
    try:
        assert await job.result(timeout=DEADLINE) == 1000
    finally:
        await stop(runner, task)
    # The first report is written at once; the 999 others within the same second are
    # throttled, and the last of them is written when the attempt ends.
    assert writes == [(0.001, "resized 1 of 1000"), (1.0, "resized 1000 of 1000")]
    info = await job.info()
    assert (info.progress, info.progress_message) == (1.0, "resized 1000 of 1000")


async def test_a_throttled_value_is_written_at_the_next_allowed_moment(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    release = asyncio.Event()

    @q.task
    async def slow() -> None:
        await current_job().progress(0.5, "half")
        await current_job().progress(0.6, "more")  # within the second: held back
        await asyncio.wait_for(release.wait(), DEADLINE)

    job = await slow.enqueue()
    runner, task = await start(q)
    try:
        deadline = time.monotonic() + DEADLINE
        while (await job.info()).progress != 0.6:  # written by the throttle's timer
            assert time.monotonic() < deadline, "progress 0.6 never written"
            await asyncio.sleep(0.05)
        assert (await job.info()).status is JobStatus.RUNNING
        release.set()
        await job.result(timeout=DEADLINE)
    finally:
        release.set()
        await stop(runner, task)


async def test_a_sync_handler_reports_progress(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    def convert(n: int) -> str:
        for i in range(1, n + 1):
            current_job().progress_sync(i / n, f"page {i}")
        return "ok"

    job = await convert.enqueue(50)
    runner, task = await start(q)
    try:
        assert await job.result(timeout=DEADLINE) == "ok"
    finally:
        await stop(runner, task)
    info = await job.info()
    assert (info.progress, info.progress_message) == (1.0, "page 50")


async def test_bad_progress_fails_the_attempt_like_any_error(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task(retries=0)
    async def bad() -> None:
        await current_job().progress(1.5)

    job = await bad.enqueue()
    runner, task = await start(q)
    try:
        with pytest.raises(Exception, match="progress must be a number from 0 to 1"):
            await job.result(timeout=DEADLINE)
    finally:
        await stop(runner, task)


async def test_jobs_are_found_by_tag_and_status(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task(retries=0)
    async def charge(customer: int, ok: bool) -> None:
        if not ok:
            raise ValueError("card declined")

    a = await charge.options(tags=["customer:42", "billing"]).enqueue(42, True)
    b = await charge.options(tags=["customer:42"]).enqueue(42, False)
    c = await q.options(tags=["customer:7"]).enqueue("charge", 7, True)
    many = await q.enqueue_many(
        [("charge", (42, True), {}), ("charge", (42, True), {})],
        options=Options(tags=["customer:42", "batch"]),
    )
    runner, task = await start(q)
    try:
        for j in (a, b, c, *many):
            with pytest.raises(Exception) if j is b else _nothing():
                await j.result(timeout=DEADLINE)
    finally:
        await stop(runner, task)

    def ids(records: list[Any]) -> list[str]:
        return [r.id for r in records]

    customer_42 = sorted([a.id, b.id, *(j.id for j in many)], reverse=True)
    assert ids(await q.jobs(tag="customer:42")) == customer_42
    assert ids(await q.jobs(tag="customer:42", status="failed")) == [b.id]
    assert ids(await q.jobs(tag="customer:7", status=["done", "failed"])) == [c.id]
    assert ids(await q.jobs(tag="batch", limit=1)) == customer_42[:1]
    assert (await a.info()).tags == "customer:42,billing"
    query = q.job_query(tag="customer:42", status="done")
    assert ids(await q.find_jobs(query)) == [i for i in customer_42 if i != b.id]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize(
    "tags",
    [
        ["x" * 129],
        ["a,b"],
        [""],
        [f"t{i}" for i in range(17)],
        ["y" * 128, "z" * 128],  # over 255 characters joined
        "customer:42",  # a string, not a list of them
        [42],
    ],
)
def test_bad_tags_are_refused(tags: Any) -> None:
    with pytest.raises(ConfigurationError):
        Options(tags=tags)


def test_tags_are_kept_once_in_order() -> None:
    assert Options(tags=["b", "a", "b"]).tags == ("b", "a")


async def test_tags_are_written_in_the_callers_transaction(
    make_queue: QueueFactory, db_url: str
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    q = make_queue()
    await q.connect()
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            rolled = await q.options(connection=conn, tags=["order:1"]).enqueue("send")
            await conn.rollback()
            kept = await q.options(connection=conn, tags=["order:2"]).enqueue("send")
            await conn.commit()
    finally:
        await engine.dispose()
    assert await q.jobs(tag="order:1") == []
    assert [r.id for r in await q.jobs(tag="order:2")] == [kept.id]
    assert rolled.id != kept.id


async def test_sync_handlers_progress_and_tags_on_the_memory_backend() -> None:
    """``aqueue.testing.drive``: the same behaviour without servers."""
    from aqueue.testing import drive

    q = Queue("mem", redis_url="redis://127.0.0.1:9/0", database_url="sqlite+aiosqlite:///no/x")

    @q.task
    def work(n: int) -> int:
        for i in range(1, n + 1):
            current_job().progress_sync(i / n, f"{i}/{n}")
        return n

    async with drive(q) as d:
        job = await work.options(tags=["batch:1"]).enqueue(10)
        other = await work.enqueue(1)
        await d.drain()
        assert await job.result(timeout=DEADLINE) == 10
        info = await job.info()
        assert (info.progress, info.progress_message, info.tags) == (1.0, "10/10", "batch:1")
        assert [r.id for r in await q.jobs(tag="batch:1", status="done")] == [job.id]
        assert other.id not in [r.id for r in await q.jobs(tag="batch:1")]


async def test_the_dashboard_shows_progress_and_tags() -> None:
    """The job page and the API's job (``aqueue.web``, over the memory backend)."""
    import httpx

    import aqueue.web
    from aqueue.testing import drive

    q = Queue("webpt", redis_url="redis://127.0.0.1:9/0", database_url="sqlite+aiosqlite:///n/x")

    @q.task
    async def half() -> None:
        await current_job().progress(0.5, "resized <b>5</b> of 10")

    async with drive(q) as d:
        job = await half.options(tags=["customer:42", "resize"]).enqueue()
        await d.drain()
        app = aqueue.web.app(q, auth=aqueue.web.token_auth("t" * 32))
        headers = {"authorization": "Bearer " + "t" * 32}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as client:
            page = (await client.get(f"/jobs/{job.id}")).text
            api = (await client.get(f"/api/jobs/{job.id}")).json()
    assert (
        '<progress max="1" value="0.5"></progress> 50% resized &lt;b&gt;5&lt;/b&gt; of 10' in page
    )
    assert "customer:42, resize" in page
    assert (api["progress"], api["tags"]) == (0.5, ["customer:42", "resize"])
