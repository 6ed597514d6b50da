"""Transactional enqueue: the job row written in the application's own SQLAlchemy
transaction (``connection=`` an ``AsyncConnection`` or an ``AsyncSession``), pushed to
Redis after its commit, and sent by the sweeper when the push never happened."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from aqueue import (
    ConfigurationError,
    JobNotFoundError,
    JobStatus,
    Options,
    Queue,
    Runner,
    RunnerConfig,
)
from aqueue._queue import enqueue as enqueue_module
from aqueue._queue import outbox

from ..conftest import QueueFactory, unique

pytestmark = pytest.mark.usefixtures("backend")

Caller = AsyncConnection | AsyncSession


@pytest.fixture
async def app_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The application's own engine on the jobs' database, with its own table."""
    engine = create_async_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def orders(app_engine: AsyncEngine) -> AsyncIterator[sa.Table]:
    table = sa.Table(
        unique("orders"),
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item", sa.String(50), nullable=False),
    )
    async with app_engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    yield table
    async with app_engine.begin() as conn:
        await conn.run_sync(table.metadata.drop_all)


@asynccontextmanager
async def transaction(engine: AsyncEngine, kind: str) -> AsyncIterator[Caller]:
    """An open transaction of the application: the caller commits or rolls back."""
    if kind == "session":
        async with AsyncSession(engine) as session:
            yield session
    else:
        async with engine.connect() as conn:
            yield conn


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)
    assert await check(), what


@asynccontextmanager
async def running(q: Queue, **config: Any) -> AsyncIterator[Runner]:
    config.setdefault("handle_signals", False)
    runner = Runner(q, RunnerConfig(**config))
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 15)


def counting_queue(make_queue: QueueFactory) -> tuple[Queue, list[str]]:
    q = make_queue()
    runs: list[str] = []

    @q.task()
    async def send(item: str) -> str:
        runs.append(item)
        return item

    return q, runs


async def redis_keys(q: Queue) -> list[bytes]:
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        return [k async for k in r.scan_iter(match=f"{{{q.key_prefix}:*")]
    finally:
        await r.aclose()


@pytest.mark.parametrize("kind", ["session", "connection"])
async def test_commit_runs_the_job_once(
    make_queue: QueueFactory, app_engine: AsyncEngine, orders: sa.Table, kind: str
) -> None:
    q, runs = counting_queue(make_queue)
    await q.connect()
    # A sweeper that would wait 30 s: the run below comes from the after-commit push.
    async with running(q, sweep_grace=30):
        async with transaction(app_engine, kind) as tx:
            await tx.execute(orders.insert().values(id=1, item="book"))
            job = await q.options(connection=tx).enqueue("send", "book")
            assert await job.status(connection=tx) is JobStatus.TODO
            # the caller's table and the jobs table: one database, one statement reads both
            jobs_t = sa.table(q.table, sa.column("id"))
            both = sa.select(
                sa.select(sa.func.count()).select_from(orders).scalar_subquery(),
                sa.select(sa.func.count()).where(jobs_t.c.id == job.id).scalar_subquery(),
            )
            assert tuple((await tx.execute(both)).one()) == (1, 1)
            await tx.commit()
        assert await job.result(timeout=10) == "book"
        await outbox.pushes_done()
    assert runs == ["book"]
    assert (await job.info()).status is JobStatus.DONE
    # marked dispatched after the push, as a plain enqueue: the sweeper leaves it alone
    store: Any = (await q._backend()).store
    await wait_for(lambda: dispatched_at(store, job.id), "the job marked dispatched")


async def job_columns(store: Any, job_id: str, columns: str) -> Any:
    params: list[Any] = []
    sql = f"SELECT {columns} FROM {store.sql.t} WHERE id = {store.sql.bind(params, job_id)}"
    return (await store.db.fetch(sql, params))[0]


async def dispatched_at(store: Any, job_id: str) -> Any:
    return (await job_columns(store, job_id, "dispatched_at"))[0]


@pytest.mark.parametrize("kind", ["session", "connection"])
async def test_rollback_leaves_no_row_and_nothing_in_redis(
    make_queue: QueueFactory, app_engine: AsyncEngine, orders: sa.Table, kind: str
) -> None:
    q, runs = counting_queue(make_queue)
    await q.connect()
    async with transaction(app_engine, kind) as tx:
        await tx.execute(orders.insert().values(id=1, item="book"))
        jobs = await q.options(connection=tx).enqueue_many(
            [("send", ("a",), {}), ("send", ("b",), {})]
        )
        assert [await j.status(connection=tx) for j in jobs] == [JobStatus.TODO] * 2
        await tx.rollback()
        # the same connection/session goes on with a new transaction, which commits
        await tx.execute(orders.insert().values(id=2, item="pen"))
        await tx.commit()
    await outbox.pushes_done()
    for j in jobs:
        with pytest.raises(JobNotFoundError):
            await j.info()
    assert await redis_keys(q) == []
    async with app_engine.connect() as conn:
        assert (await conn.execute(sa.select(orders.c.id))).scalars().all() == [2]
    assert runs == []


async def test_the_job_is_invisible_until_commit(
    make_queue: QueueFactory, app_engine: AsyncEngine, orders: sa.Table
) -> None:
    q, _ = counting_queue(make_queue)
    await q.connect()
    async with transaction(app_engine, "session") as tx:
        job = await send_in(q, tx)
        with pytest.raises(JobNotFoundError):
            await job.info()  # aqueue's own connection: only committed rows
        assert (await job.info(connection=tx)).status is JobStatus.TODO
        assert await q.cancel(job.id, "changed my mind", connection=tx)
        assert await job.status(connection=tx) is JobStatus.CANCELLED
        await tx.commit()
    assert await job.status() is JobStatus.CANCELLED


async def send_in(q: Queue, tx: Caller, **options: Any) -> Any:
    jobs = await q.enqueue_many([("send", ("x",), {})], options=Options(connection=tx, **options))
    return jobs[0]


async def test_a_process_dead_between_commit_and_push_still_runs_its_job(
    make_queue: QueueFactory,
    app_engine: AsyncEngine,
    orders: sa.Table,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The after-commit push never happens (as when the process dies right after the
    COMMIT): the row waits with ``dispatched_at`` NULL and the sweeper sends it."""
    q, runs = counting_queue(make_queue)
    await q.connect()
    monkeypatch.setattr(enqueue_module, "after_commit", lambda *a: None)
    async with transaction(app_engine, "connection") as tx:
        job = await q.options(connection=tx).enqueue("send", "lost push")
        await tx.commit()
    store: Any = (await q._backend()).store
    row = await job_columns(store, job.id, "dispatched_at, updated_at, created_at")
    # what the sweeper looks for: never dispatched, written at enqueue time
    assert row[0] is None and row[2] <= row[1] <= q._clock()
    assert await redis_keys(q) == []
    async with running(q, sweep_grace=0.3, sweep_period=0.1):
        assert await job.result(timeout=10) == "lost push"
    assert runs == ["lost push"]


KILLED_AFTER_COMMIT = """
import asyncio, os, sys
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from aqueue import Queue

async def main() -> None:
    db_url, redis_url, table, prefix, kind = sys.argv[1:]
    q = Queue("q", database_url=db_url, redis_url=redis_url, table=table, key_prefix=prefix)
    await q.connect()
    engine = create_async_engine(db_url)
    if kind == "session":
        tx = AsyncSession(engine)
    else:
        tx = await engine.connect()
    job = await q.options(connection=tx).enqueue("send", "killed")
    print(job.id, flush=True)
    await tx.commit()
    os._exit(0)  # dead before the loop runs the after-commit push

asyncio.run(main())
"""


@pytest.mark.parametrize("kind", ["session", "connection"])
async def test_a_process_killed_after_its_commit_still_gets_its_job_run(
    make_queue: QueueFactory, db_url: str, kind: str
) -> None:
    q, runs = counting_queue(make_queue)
    await q.connect()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        KILLED_AFTER_COMMIT,
        db_url,
        "redis://127.0.0.1:6379/0",
        q.table,
        q.key_prefix,
        kind,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    job = q.job(out.decode().split()[0])
    assert (await job.info()).status is JobStatus.TODO  # committed
    store: Any = (await q._backend()).store
    assert await dispatched_at(store, job.id) is None
    assert await redis_keys(q) == []  # never pushed
    async with running(q, sweep_grace=0.3, sweep_period=0.1):
        assert await job.result(timeout=10) == "killed"
    assert runs == ["killed"]


@pytest.mark.parametrize("kind", ["session", "connection"])
async def test_conflicts_do_not_abort_the_callers_transaction(
    make_queue: QueueFactory, app_engine: AsyncEngine, orders: sa.Table, kind: str
) -> None:
    q, runs = counting_queue(make_queue)
    await q.connect()
    before = await q.options(unique_key="order-1").enqueue("send", "committed")
    async with transaction(app_engine, kind) as tx:
        await tx.execute(orders.insert().values(id=1, item="book"))
        a = await q.options(connection=tx, job_id="fixed-id").enqueue("send", "a")
        again = await q.options(connection=tx, job_id="fixed-id").enqueue("send", "a2")
        same = await q.options(connection=tx, unique_key="order-1").enqueue("send", "dup")
        # the transaction is still usable after both conflicts
        await tx.execute(orders.insert().values(id=2, item="pen"))
        await tx.commit()
    assert again.id == a.id == "fixed-id"
    assert same.id == before.id
    async with app_engine.connect() as conn:
        assert (await conn.execute(sa.select(orders.c.id))).scalars().all() == [1, 2]
    async with running(q, sweep_grace=30):
        assert await a.result(timeout=10) == "a"
        assert await before.result(timeout=10) == "committed"
    assert sorted(runs) == ["a", "committed"]


async def test_on_postgres_a_failed_insert_would_abort_the_transaction(
    backend: str, app_engine: AsyncEngine, orders: sa.Table
) -> None:
    """Why the test above matters: on PostgreSQL a statement that fails, a duplicate key
    say, aborts the whole transaction; the caller's next statement is refused."""
    if backend != "postgres":
        pytest.skip("MySQL and SQLite fail only the statement")
    async with app_engine.connect() as tx:
        await tx.execute(orders.insert().values(id=1, item="book"))
        with pytest.raises(sa.exc.IntegrityError):
            await tx.execute(orders.insert().values(id=1, item="again"))
        with pytest.raises(sa.exc.DBAPIError, match="current transaction is aborted"):
            await tx.execute(orders.insert().values(id=2, item="pen"))
        await tx.rollback()


async def test_the_callers_locks_do_not_block_the_runner(
    backend: str, make_queue: QueueFactory, app_engine: AsyncEngine, orders: sa.Table
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has one writer: an open write transaction holds the whole file")
    q, runs = counting_queue(make_queue)
    await q.connect()
    async with app_engine.begin() as conn:
        await conn.execute(orders.insert().values(id=1, item="book"))
    async with running(q, sweep_grace=30):
        async with transaction(app_engine, "connection") as tx:
            # the caller holds a lock on its own row and on its job's row
            await tx.execute(orders.update().where(orders.c.id == 1).values(item="books"))
            held = await q.options(connection=tx).enqueue("send", "held")
            others = [await q.enqueue("send", f"other{i}") for i in range(5)]
            for j in others:
                assert await j.result(timeout=10) == j_item(j, others)
            assert await held.status(connection=tx) is JobStatus.TODO
            await tx.commit()
        assert await held.result(timeout=10) == "held"
    assert sorted(runs) == sorted(["held", *(f"other{i}" for i in range(5))])


def j_item(job: Any, others: list[Any]) -> str:
    return f"other{others.index(job)}"


async def test_memory_backend_refuses_connection() -> None:
    from aqueue.testing import drive

    q = Queue("mem")

    @q.task()
    async def send(item: str) -> None:
        pass

    async with drive(q):
        with pytest.raises(ConfigurationError, match="needs a SQL store"):
            await send.options(connection=object()).enqueue("x")


async def test_connection_must_be_sqlalchemy(make_queue: QueueFactory) -> None:
    q, _ = counting_queue(make_queue)
    with pytest.raises(ConfigurationError, match="AsyncConnection or AsyncSession"):
        await q.options(connection=object()).enqueue("send", "x")


@pytest.mark.parametrize("kind", ["session", "connection"])
async def test_long_text_full_of_escapes_in_the_callers_transaction_is_stored_exactly(
    make_queue: QueueFactory, app_engine: AsyncEngine, kind: str
) -> None:
    """On MySQL, long text in the caller's transaction goes out as a literal aqueue
    writes itself (the store's own statements do the same): every character that needs an
    escape, and a % that the driver must not take for a placeholder, comes back exactly."""
    q, runs = counting_queue(make_queue)
    text = ("\\'\"\0\n\r\x1a%s %% é€😀 " * 300) + "\\"
    await q.connect()
    async with transaction(app_engine, kind) as tx:
        job = await q.options(connection=tx, tags=["big"]).enqueue("send", text)
        assert (await job.info(connection=tx)).payload is not None
        await tx.commit()
    async with running(q, sweep_grace=30):
        assert await job.result(timeout=10) == text
    assert runs == [text]
