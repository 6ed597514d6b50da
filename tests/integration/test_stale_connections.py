"""Held connections made stale by a database restart (MariaDB or PostgreSQL behind a TCP
proxy that cuts every connection, refuses new ones for a moment, then accepts them again).

A statement on a connection the server closed is never sent: it goes out on a new
connection, so an enqueue after the restart succeeds instead of reporting an unknown
outcome, and the runner's statements do not fail. A statement that was sent and whose
reply was lost still has an unknown outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from aqueue import EnqueueOutcomeUnknownError, JobStatus, Queue, Runner, RunnerConfig, StoreError
from aqueue._store.conns import alive
from aqueue._store.store import Store

from ..chaos.harness import wait_for
from ..conftest import QueueFactory
from .sqlproxy import FaultProxy, fault_proxy, sleep_sql
from .test_sql_faults import CuttingProxy
from .test_sql_faults import proxy as proxy  # the cutting one, as the fixture "proxy"

SQL_SERVERS = pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)

server = pytest.fixture(fault_proxy, name="server")


async def _store(q: Queue) -> Store:
    return (await q._backend()).store


def _sleep(store: Store, seconds: float) -> str:
    return sleep_sql("postgres" if store.engine.dialect.name == "postgresql" else "mysql", seconds)


async def _hold_several(store: Store, n: int = 6) -> None:
    """Statements at once, so that the store holds ``n`` connections between them."""
    await asyncio.gather(*(store.db.fetch(_sleep(store, 0.05)) for _ in range(n)))
    assert len(store.db.conns.idle) >= n


async def _restart(server: FaultProxy, store: Store, down: float = 0.3) -> float:
    """Cut every connection, refuse new ones for ``down`` seconds; return when the
    server is back and the client has seen its connections closed (as after a real
    restart, which takes longer than the closes take to arrive)."""
    server.outage = down
    server.go_down()
    await server.back.wait()
    await wait_for(
        lambda: not any(alive(h.raw) for h in store.db.conns.idle),
        5,
        "the closes seen",
        interval=0.001,
    )
    return time.monotonic()


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_enqueues_after_a_database_restart_never_report_an_unknown_outcome(
    make_queue: QueueFactory, server: FaultProxy
) -> None:
    q = make_queue(database_url=server.url())

    @q.task
    async def work(n: int) -> int:
        return n

    before = await asyncio.gather(*(work.enqueue(i) for i in range(20)))
    store = await _store(q)
    await _hold_several(store)
    back = await _restart(server, store)

    ids: list[str] = []
    first_ok: float | None = None
    for i in range(20):
        job = await work.enqueue(100 + i)  # raised EnqueueOutcomeUnknownError before
        if first_ok is None:
            first_ok = time.monotonic()
            # the first dead one found, its dead siblings were dropped with it
            assert all(alive(h.raw) for h in store.db.conns.idle)
        ids.append(job.id)
    assert first_ok is not None
    recovery = first_ok - back
    assert recovery < 0.5, f"first enqueue after the restart took {recovery:.3f} s"
    # more statements at once than connections held: the engine's pool, which got back
    # the ones over the held bound before the restart, hands out none of its dead ones
    await asyncio.gather(*(store.db.fetch(_sleep(store, 0.02)) for _ in range(15)))
    # each stored exactly once
    counts = await q.counts()
    assert sum(counts.values()) == len(before) + len(ids)
    assert counts[JobStatus.TODO] == len(before) + len(ids)
    assert server.cuts == 1


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_reply_lost_after_sending_is_still_an_unknown_outcome(
    make_queue: QueueFactory, proxy: CuttingProxy
) -> None:
    q = make_queue(database_url=proxy.url())

    @q.task
    async def charge(order: int) -> int:
        return order

    await charge.enqueue(0)
    store = await _store(q)
    await _hold_several(store)
    held = len(store.db.conns.idle)
    proxy.armed = True  # the next INSERT reaches the server and runs; its reply is lost
    with pytest.raises(EnqueueOutcomeUnknownError) as err:
        await charge.enqueue(7)
    assert proxy.cuts == 1, repr(err.value.__cause__)
    job_id = err.value.job_id
    assert job_id in str(err.value)
    assert (await q.counts())[JobStatus.TODO] == 2  # it ran and committed
    # not sent again on another connection: stored once, and enqueueing it again with
    # its id is a no-op returning it
    again = await q.options(job_id=job_id).enqueue("charge", 7)
    assert again.id == job_id
    assert await again.status() is JobStatus.TODO
    assert sum((await q.counts()).values()) == 2
    # the cut connection alone was dropped: its siblings are alive and kept
    assert len(store.db.conns.idle) >= held - 1


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_runner_statements_after_a_database_restart_do_not_fail(
    make_queue: QueueFactory, server: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    producer = make_queue()  # straight to the server: only the runner's statements are cut
    q = make_queue(database_url=server.url())
    done: list[int] = []

    @producer.task
    async def work(n: int) -> None:
        done.append(n)

    q.task(work.fn)
    runner = Runner(q, RunnerConfig(concurrency=8, handle_signals=False))
    task = asyncio.ensure_future(runner.run())
    try:
        await asyncio.gather(*(work.enqueue(i) for i in range(40)))
        await wait_for(lambda: len(done) == 40, 20, "the first jobs run")
        store = await _store(q)
        await _hold_several(store)
        await _restart(server, store)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="aqueue"):
            for i in range(40, 80):
                await work.enqueue(i)
            await wait_for(lambda: len(done) == 80, 20, "the jobs after the restart run")
        failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert failures == []
        assert runner.stats.done == 80
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)


@SQL_SERVERS
@pytest.mark.timeout(60)
async def test_a_connection_reset_during_its_handshake_is_a_refusal_not_an_unknown_outcome(
    make_queue: QueueFactory, server: FaultProxy
) -> None:
    """A proxy that accepts and resets connections in front of a server that is down: no
    statement was sent, so the enqueue is refused (StoreError), never reported unknown."""
    q = make_queue(database_url=server.url())

    @q.task
    async def job() -> None:
        return None

    await q.connect()
    server.outage = 30
    server.go_down()
    # The first try may go out on a pooled connection whose reset this process has not
    # read yet: written, reply lost, truly unknown. Every later one needs a new
    # connection, whose handshake is reset before any statement is sent.
    with pytest.raises(StoreError):
        await job.enqueue()
    for _ in range(4):
        with pytest.raises(StoreError) as err:
            await job.enqueue()
        assert not isinstance(err.value, EnqueueOutcomeUnknownError), repr(err.value)
        assert "enqueue failed" in str(err.value)
