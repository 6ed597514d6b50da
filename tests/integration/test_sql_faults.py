"""Real SQL faults through a TCP proxy in front of MariaDB and of PostgreSQL: a connection
cut right after the server executed (and committed) an INSERT, a claim's COMMIT that never
reaches the server, and a database that is not reachable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from aqueue import (
    EnqueueOutcomeUnknownError,
    JobStatus,
    Options,
    Runner,
    RunnerConfig,
    StoreError,
)

from ..conftest import QueueFactory
from .sqlproxy import (
    COMMIT,
    INSERT,
    ClientStream,
    Dialect,
    dialect_of,
    proxied_url,
    url_of,
    work_behind,
)


class CuttingProxy:
    """Forwards to the SQL server; once armed, the connection that sends the ``trigger``
    statement (an INSERT) gets it delivered and executed, then is cut before the reply
    reaches the client; with ``deliver`` off it is cut before the statement reaches the
    server (which then rolls back the connection's open transaction)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        url = sa.make_url(url_of(dialect))
        self.target = (url.host or "127.0.0.1", url.port or 0)
        self.armed = False
        self.trigger = INSERT
        self.deliver = True
        self.cuts = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(*self.target)
        hold = asyncio.Event()
        cut = asyncio.Event()

        client = ClientStream(cr, self.dialect)

        async def up() -> None:
            while data := await client.read():
                if self.armed and client.carries(self.trigger):
                    self.armed = False
                    if not self.deliver:
                        self.cuts += 1
                        return
                    hold.set()
                sw.write(data)
                await sw.drain()
                if hold.is_set():
                    await cut.wait()
                    return

        async def down() -> None:
            while data := await sr.read(65536):
                if hold.is_set():
                    # the server's reply to the INSERT: it is committed (PostgreSQL too:
                    # it flushes its replies with ReadyForQuery, after the implicit
                    # transaction's commit); drop the reply
                    self.cuts += 1
                    cut.set()
                    return
                cw.write(data)
                await cw.drain()

        t_up = asyncio.ensure_future(up())
        t_down = asyncio.ensure_future(down())
        with contextlib.suppress(Exception):
            await asyncio.wait({t_up, t_down}, return_when=asyncio.FIRST_COMPLETED)
        for t in (t_up, t_down):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        for w in (cw, sw):
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()

    def url(self) -> str:
        return proxied_url(self.dialect, self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxy(backend: str) -> AsyncIterator[CuttingProxy]:
    p = CuttingProxy(dialect_of(backend))
    await p.start()
    yield p
    await p.close()


# These tests are about the SQL server's connection: run them on the servers.
SQL_SERVERS = pytest.mark.parametrize("backend", ["mysql", "postgres"], indirect=True)


@SQL_SERVERS
async def test_commit_outcome_unknown_carries_id_and_retry_is_a_noop(
    make_queue: QueueFactory, proxy: CuttingProxy
) -> None:
    direct = make_queue()
    cut = make_queue(database_url=proxy.url())

    @direct.task
    async def charge(order: int) -> int:
        return order

    cut.task(charge.fn)
    await direct.connect()
    await cut.connect()
    proxy.armed = True
    with pytest.raises(EnqueueOutcomeUnknownError) as err:
        await cut.enqueue("charge", 7)
    assert proxy.cuts == 1, repr(err.value.__cause__)
    job_id = err.value.job_id
    assert job_id in str(err.value)
    # The INSERT did commit before its reply was lost...
    counts = await direct.counts()
    assert counts[JobStatus.TODO] == sum(counts.values()) == 1
    # ...so enqueueing again with the id is a no-op returning that job.
    again = await direct.options(job_id=job_id).enqueue("charge", 7)
    assert again.id == job_id
    assert sum((await direct.counts()).values()) == 1
    assert await again.status() is JobStatus.TODO


@SQL_SERVERS
async def test_open_claim_whose_commit_is_lost_is_taken_again(
    make_queue: QueueFactory, proxy: CuttingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle runner starts a job once its claim statement has run, while the claim's
    commit is on its way. The connection is cut before that COMMIT reaches the server
    (which rolls the claim back): the runner claims the job again under the same token
    before recording it, so the job runs once and ends ``done``."""
    cut, work, runs = work_behind(make_queue, proxy.url())
    job = await work.enqueue(21)
    await cut.connect()  # the schema is in place: the first COMMIT is the claim's
    proxy.trigger, proxy.deliver, proxy.armed = COMMIT, False, True
    runner = Runner(cut, RunnerConfig(burst=True, handle_signals=False))
    with caplog.at_level(logging.WARNING, logger="aqueue.runner"):
        await asyncio.wait_for(runner.run(), 30)
    assert proxy.cuts == 1
    assert "was never committed: claimed again" in caplog.text
    assert runs == [21]
    info = await job.info()
    assert info.status is JobStatus.DONE
    assert info.attempts == 1
    assert await job.result(timeout=5) == 42
    assert runner.stats.done == 1
    assert runner.stats.finishes_rejected == 0


@SQL_SERVERS
async def test_unreachable_database_never_reports_success(
    make_queue: QueueFactory, backend: str
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    q = make_queue(database_url=proxied_url(dialect_of(backend), port), init_db=False)

    @q.task
    async def t() -> None:
        return None

    with pytest.raises(StoreError) as err:
        await t.enqueue()
    assert not isinstance(err.value, EnqueueOutcomeUnknownError)
    assert "enqueue failed" in str(err.value)


def test_options_job_id_spelling() -> None:
    assert Options(job_id="abc").job_id == "abc"
