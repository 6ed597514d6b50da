"""PostgreSQL's own faults, beyond the proxy cuts its variants of the MariaDB tests share:
a claim's connection ended by ``pg_terminate_backend`` while its COMMIT is on the way,
row locks held past ``lock_timeout`` (55P03, retried), and a server of the test's own
restarted: a fast shutdown (idle sessions get 57P01) and a crash (SIGKILL of every
process, WAL recovery on the same data directory and port)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import sqlalchemy as sa

from aqueue import (
    EnqueueOutcomeUnknownError,
    JobStatus,
    Queue,
    Runner,
    RunnerConfig,
    StoreError,
)
from aqueue._store.conns import alive
from aqueue._store.store import Store

from ..chaos.harness import wait_for
from ..conftest import POSTGRES_URL, REDIS_URL, QueueFactory, unique
from ..soak.servers import PostgresServer, postgres_available
from .sqlproxy import COMMIT, FaultProxy, fault_proxy, sleep_sql, work_behind

POSTGRES = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

proxy = pytest.fixture(fault_proxy)


async def _admin_fetch(sql: str) -> list[tuple[object, ...]]:
    """A statement on a connection of its own to the shared server (an operator's)."""
    admin = Store(POSTGRES_URL, table=unique("t"))
    try:
        return [tuple(r) for r in await admin.db.fetch(sql)]
    finally:
        await admin.close()


@POSTGRES
@pytest.mark.timeout(60)
async def test_claim_connection_terminated_while_its_commit_is_in_flight_runs_the_job_once(
    make_queue: QueueFactory, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The claim's UPDATE ran in its open transaction and the runner started the job; its
    COMMIT is held in the proxy while an operator terminates that session: the server
    rolls the claim back and the runner hears 57P01 for the COMMIT (outcome unknown to
    it). It finds the job not claimed, claims it again under the same token and records
    the one run it made: done, one attempt, nothing rejected."""
    cut, work, runs = work_behind(make_queue, proxy.url())
    await cut.connect()
    runner = Runner(cut, RunnerConfig(handle_signals=False))
    task = asyncio.ensure_future(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), 20)
        proxy.arm(COMMIT, "stall")
        job = await work.enqueue(21)
        await asyncio.wait_for(proxy.hit.wait(), 10)  # the claim's COMMIT is held
        sessions = await _admin_fetch(
            "SELECT pid, state FROM pg_stat_activity WHERE client_addr = '127.0.0.1' "
            f"AND client_port = {int(proxy.hit_port)}"
        )
        assert len(sessions) == 1 and sessions[0][1] == "idle in transaction", sessions
        with caplog.at_level(logging.INFO, logger="aqueue.runner"):
            ended = await _admin_fetch(f"SELECT pg_terminate_backend({int(sessions[0][0])})")
            assert ended == [(True,)]
            proxy.release.set()
            assert await job.result(timeout=20) == 42
        assert "was never committed: claimed again" in caplog.text, caplog.text[-3000:]
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
    assert runs == [21]
    info = await job.info()
    assert info.status is JobStatus.DONE and info.attempts == 1, info
    assert runner.stats.finishes_rejected == 0


def _nothing_to_read(raw: object) -> bool:
    """The driver connection's socket holds no unread bytes: whatever arrived has been
    handed to the driver's protocol (its transport reads and dispatches at once)."""
    fd = raw._transport.get_extra_info("socket").fileno()  # type: ignore[attr-defined]
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as dup:  # the same socket
        try:
            return not dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True


@POSTGRES
@pytest.mark.timeout(60)
async def test_session_ended_while_idle_before_its_end_of_stream_is_read_is_not_used(
    make_queue: QueueFactory, proxy: FaultProxy
) -> None:
    """pg_terminate_backend ends a held idle session: its FATAL error arrives, the end of
    the stream is held back. asyncpg has read an error in its idle state and refuses
    every statement on that connection until the end comes ("cannot switch to state";
    nothing written). The enqueue goes out on another connection: stored once, neither
    refused nor unknown, and the unusable connection is not kept."""
    q = make_queue(database_url=proxy.url())

    @q.task
    async def work(n: int) -> int:
        return n

    await work.enqueue(0)
    store = (await q._backend()).store
    pid = int((await store.db.fetch("SELECT pg_backend_pid()"))[0][0])
    victim = store.db.conns.idle[-1].raw  # the one that ran it: next to be taken
    proxy.hold_eof = True
    assert await _admin_fetch(f"SELECT pg_terminate_backend({pid})") == [(True,)]
    await wait_for(lambda: proxy.eofs_held == 1, 10, "the session ended")
    await wait_for(lambda: _nothing_to_read(victim), 10, "the FATAL error read")
    assert not victim.is_closed()  # the end of stream is still on its way
    job = await work.enqueue(1)
    assert all(h.raw is not victim for h in store.db.conns.idle)
    counts = await q.counts()
    assert counts[JobStatus.TODO] == sum(counts.values()) == 2
    assert await job.status() is JobStatus.TODO


@POSTGRES
@pytest.mark.timeout(60)
async def test_row_locks_past_lock_timeout_on_claim_and_finish_are_retried(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Another transaction holds the job's row (``SELECT ... FOR UPDATE``) while the
    runner claims it, then again while the runner records its finish: each statement
    waits ``lock_timeout`` (1 s), fails with 55P03 and is run again until the lock is
    gone. The job runs once and is recorded done."""
    q = make_queue(sql_lock_wait_timeout=1)
    runs: list[int] = []
    finish = asyncio.Event()

    @q.task
    async def work(n: int) -> int:
        runs.append(n)
        await finish.wait()
        return n

    job = await work.enqueue(5)
    store = (await q._backend()).store
    dsn = sa.make_url(POSTGRES_URL).set(drivername="postgresql")
    locker = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    lock_row = f"SELECT id FROM {store.sql.t} WHERE id = $1 FOR UPDATE"
    runner = Runner(q, RunnerConfig(lease=20, heartbeat=5, handle_signals=False))
    task: asyncio.Future[None] | None = None
    try:
        with caplog.at_level(logging.DEBUG, logger="aqueue.store"):
            async with locker.transaction():
                assert len(await locker.fetch(lock_row, job.id)) == 1
                task = asyncio.ensure_future(runner.run())
                await wait_for(
                    lambda: "claiming jobs: retrying after" in caplog.text, 15, "a claim retry"
                )
                assert runs == []  # not started on a claim that did not take the row
            await wait_for(lambda: runs == [5], 15, "the job started after the release")
            async with locker.transaction():
                assert len(await locker.fetch(lock_row, job.id)) == 1
                finish.set()
                await wait_for(
                    lambda: "recording finished jobs: retrying after" in caplog.text,
                    15,
                    "a finish retry",
                )
                assert await job.status() is JobStatus.RUNNING
            assert await job.result(timeout=15) == 5
        retries = [r.getMessage() for r in caplog.records if "retrying after" in r.getMessage()]
        assert any("lock timeout" in m for m in retries), retries
    finally:
        await locker.close()
        runner.stop()
        if task is not None:
            await asyncio.wait_for(task, 20)
    assert runs == [5]
    info = await job.info()
    assert info.status is JobStatus.DONE and info.attempts == 1, info
    assert runner.stats.finishes_rejected == 0


# -- a server of the test's own, restarted ---------------------------------------------


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries (or a postgres user) not available")
    server = PostgresServer()
    try:
        server.install()
        server.start()
        server.create_database("test")
        yield server
    finally:
        server.remove()


@pytest.fixture
async def own_queue(own_postgres: PostgresServer) -> AsyncIterator[Queue]:
    """A queue on the test's own server (``make_queue`` would drop its tables on the
    shared one)."""
    table = unique("t")
    q = Queue(
        "q", redis_url=REDIS_URL, database_url=own_postgres.url, table=table, key_prefix=unique("p")
    )
    try:
        yield q
    finally:
        if own_postgres.answers():
            await q.purge()
        await q.close()
        store = Store(own_postgres.url, table=table)
        try:
            await store.drop_schema()
        finally:
            await store.close()


async def _held_store(q: Queue, n: int = 6) -> Store:
    """The queue's store, holding ``n`` connections between statements."""
    store = (await q._backend()).store
    await asyncio.gather(*(store.db.fetch(sleep_sql("postgres", 0.05)) for _ in range(n)))
    assert len(store.db.conns.idle) >= n
    return store


@pytest.mark.timeout(120)
async def test_enqueues_after_a_fast_shutdown_and_restart_never_report_an_unknown_outcome(
    own_queue: Queue, own_postgres: PostgresServer
) -> None:
    """A fast shutdown ends every idle session with 57P01 and closes it; the held
    connections are then known closed, so the first enqueues after the restart go out
    on new connections: stored once each, none refused or reported unknown."""

    @own_queue.task
    async def work(n: int) -> int:
        return n

    before = [await work.enqueue(i) for i in range(10)]
    store = await _held_store(own_queue)
    held = list(store.db.conns.idle)
    await asyncio.to_thread(own_postgres.stop)
    await asyncio.to_thread(own_postgres.start)
    await wait_for(
        lambda: not any(alive(h.raw) for h in held), 10, "the shutdown seen", interval=0.001
    )
    after = []
    for i in range(20):
        after.append(await work.enqueue(100 + i))  # neither StoreError nor unknown
    counts = await own_queue.counts()
    assert counts[JobStatus.TODO] == sum(counts.values()) == len(before) + len(after)


@pytest.mark.timeout(120)
async def test_runner_across_a_server_crash_runs_every_job_exactly_once(
    own_queue: Queue, own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL of the server (every backend at once) while a runner works through a
    trickle of jobs and a producer keeps enqueueing; the server restarts with WAL
    recovery on the same port. Every enqueue that returned is a job that runs exactly
    once; an enqueue whose outcome was unknown runs at most once (at least once if it
    turns out stored); nothing is left unfinished."""
    runs: list[int] = []

    @own_queue.task
    async def work(n: int) -> int:
        runs.append(n)
        await asyncio.sleep(0.02)
        return n

    # lease 10 s: the local deadline (2/3 of it after a renewal) outlasts the restart
    cfg = RunnerConfig(concurrency=10, lease=10, heartbeat=2, handle_signals=False)
    runner = Runner(own_queue, cfg)
    task = asyncio.ensure_future(runner.run())
    stored: dict[int, str] = {}
    unknown: dict[int, str] = {}
    numbers = itertools.count()

    async def produce(until: asyncio.Event) -> None:
        while not until.is_set():
            n = next(numbers)
            try:
                stored[n] = (await work.enqueue(n)).id
            except EnqueueOutcomeUnknownError as exc:
                unknown[n] = exc.job_id
            except StoreError:
                pass  # refused: certainly not stored
            await asyncio.sleep(0.005)  # a trickle, so claims and finishes are in flight

    try:
        await asyncio.wait_for(runner.started.wait(), 30)
        stop_producing = asyncio.Event()
        with caplog.at_level(logging.INFO, logger="aqueue"):
            producer = asyncio.ensure_future(produce(stop_producing))
            await wait_for(lambda: len(runs) >= 50, 20, "50 jobs run before the crash")
            await asyncio.to_thread(own_postgres.kill)
            await asyncio.to_thread(own_postgres.start)
            at_restart = len(stored)
            await wait_for(lambda: len(stored) >= at_restart + 50, 30, "enqueues after it")
            stop_producing.set()
            await producer

            async def all_done() -> bool:
                counts = await own_queue.counts()
                return counts[JobStatus.DONE] == sum(counts.values())

            await wait_for(all_done, 30, "every stored job done")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
    twice = {n: c for n, c in Counter(runs).items() if c > 1}
    assert not twice, f"ran more than once: {twice}\n{caplog.text[-3000:]}"
    missing = set(stored) - set(runs)
    assert not missing, f"stored but never run: {sorted(missing)[:20]}"
    assert set(runs) <= set(stored) | set(unknown)
    counts = await own_queue.counts()
    assert counts[JobStatus.DONE] == len(set(runs)), counts
    assert runner.stats.finishes_rejected == 0, caplog.text[-3000:]
