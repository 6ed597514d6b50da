"""TCP proxies in front of MariaDB or PostgreSQL that inject faults at a chosen statement.

Armed with a :class:`Trigger` (a statement's bytes, per dialect) and an action, the
:class:`FaultProxy` acts on the first statement carrying the trigger:

- ``stall``: hold it until :attr:`FaultProxy.release` is set (a statement in flight for
  as long as the test wants);
- ``outage``: drop it, abort every connection through the proxy and refuse new ones for
  :attr:`FaultProxy.outage` seconds (a server killed and restarted).

On MariaDB a statement is recognised in the bytes of a client packet. On PostgreSQL the
client's stream is read message by message (:class:`ClientStream`): asyncpg sends a
statement's text once per connection (``Parse``), then only the name it prepared it
under (``Bind``/``Execute``), so a statement is recognised by the text it was prepared
from, and acting on the ``Bind`` acts on the statement's execution, not its preparation.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from aqueue import Queue

from ..conftest import MYSQL_URL, POSTGRES_URL, QueueFactory

Dialect = Literal["mysql", "postgres"]


@dataclass(frozen=True)
class Trigger:
    mysql: bytes
    postgres: bytes

    def of(self, dialect: Dialect) -> bytes:
        return self.mysql if dialect == "mysql" else self.postgres


# MariaDB: the COM_QUERY (0x03) "COMMIT", not "SET AUTOCOMMIT = 0"; PostgreSQL: the
# simple query "COMMIT" that ends a claim's transaction (its "BEGIN" does not match).
COMMIT = Trigger(b"\x03COMMIT", b"COMMIT")
CLAIM = Trigger(b"SET status = 'running'", b"SET status = 'running'")  # the claim's UPDATE
INSERT = Trigger(b"INSERT INTO", b"INSERT INTO")  # an enqueue
FINISH = Trigger(b"finished_at = ", b"finished_at = ")  # a final outcome's UPDATE


def url_of(dialect: Dialect) -> str:
    return MYSQL_URL if dialect == "mysql" else POSTGRES_URL


def dialect_of(backend: str) -> Dialect:
    if backend not in ("mysql", "postgres"):
        raise ValueError(f"no SQL server proxy for {backend!r}")
    return "mysql" if backend == "mysql" else "postgres"


def sleep_sql(dialect: Dialect, seconds: float) -> str:
    """A query that holds its connection for ``seconds``."""
    return f"SELECT SLEEP({seconds})" if dialect == "mysql" else f"SELECT pg_sleep({seconds})"


def session_id_sql(dialect: Dialect) -> str:
    """The server's id of the connection (what ``kill_sql`` ends)."""
    return "SELECT CONNECTION_ID()" if dialect == "mysql" else "SELECT pg_backend_pid()"


def kill_sql(dialect: Dialect, session: int) -> str:
    """End another connection from the server's side, as an operator would."""
    return f"KILL {session}" if dialect == "mysql" else f"SELECT pg_terminate_backend({session})"


# PostgreSQL's untyped messages before the startup message: SSL and GSS encryption
# requests (answered by one byte, then the startup message follows).
_ENCRYPTION_REQUESTS = {80877103, 80877104}


class ClientStream:
    """The client's side of one proxied connection, read in pieces that are whole
    statements: packets as they come on MariaDB, whole protocol messages on PostgreSQL.
    :meth:`carries` says whether the last piece read executes a statement whose text
    holds a trigger."""

    def __init__(self, reader: asyncio.StreamReader, dialect: Dialect) -> None:
        self._reader = reader
        self._dialect = dialect
        self._buf = b""
        self._started = False  # PostgreSQL: past the untyped startup messages
        self._prepared: dict[bytes, bytes] = {}  # statement name -> its text
        self._executes: list[bytes] = []  # texts the last piece runs (PostgreSQL)
        self._last = b""

    async def read(self) -> bytes:
        """The next piece (``b""`` at the end of the stream)."""
        if self._dialect == "mysql":
            self._last = await self._reader.read(65536)
            return self._last
        while True:
            piece = self._split()
            if piece:
                self._last = piece
                return piece
            data = await self._reader.read(65536)
            if not data:
                self._last = self._buf
                self._buf = b""
                return self._last
            self._buf += data

    def carries(self, trigger: Trigger) -> bool:
        want = trigger.of(self._dialect)
        if self._dialect == "mysql":
            return want in self._last
        return any(want in text for text in self._executes)

    def _split(self) -> bytes:
        """The whole messages at the head of the buffer, noting the statements they run."""
        self._executes = []
        end = 0
        while True:
            header = 4 if not self._started else 5
            if len(self._buf) - end < header:
                break
            at = end if not self._started else end + 1
            (length,) = struct.unpack_from("!i", self._buf, at)
            stop = at + length
            if len(self._buf) < stop:
                break
            if not self._started:
                (code,) = struct.unpack_from("!i", self._buf, at + 4)
                self._started = code not in _ENCRYPTION_REQUESTS
            else:
                self._note(self._buf[end : end + 1], self._buf[at + 4 : stop])
            end = stop
        piece, self._buf = self._buf[:end], self._buf[end:]
        return piece

    def _note(self, kind: bytes, body: bytes) -> None:
        if kind == b"P":  # Parse: name, text, parameter types
            name, text = body.split(b"\0", 2)[:2]
            self._prepared[name] = text
        elif kind == b"B":  # Bind: portal, statement name, ... (executes it)
            name = body.split(b"\0", 2)[1]
            self._executes.append(self._prepared.get(name, b""))
        elif kind == b"Q":  # a simple query: its text
            self._executes.append(body.rstrip(b"\0"))


class FaultProxy:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        url = sa.make_url(url_of(dialect))
        self.target = (url.host or "127.0.0.1", url.port or (3306 if dialect == "mysql" else 5432))
        self.trigger = COMMIT
        self.action: Literal["stall", "outage"] = "stall"
        self.armed = False
        self.hit = asyncio.Event()
        """Set when the armed trigger went by."""
        self.hit_port = 0
        """The proxy's own port towards the server on the connection that carried it (the
        server's view of that client: PostgreSQL's ``pg_stat_activity.client_port``)."""
        self.release = asyncio.Event()
        self.outage = 0.5
        self.frozen = False
        """Hold everything every client sends until :attr:`release` is set: a database
        that does not answer (its connections stay open)."""
        self.hold_eof = False
        """Once a server ends a connection, keep the client's side open until
        :attr:`release` is set."""
        self.eofs_held = 0
        self.cuts = 0
        self.back = asyncio.Event()
        """Set when the last outage is over."""
        self.port = 0
        self._down_until = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def arm(self, trigger: Trigger, action: Literal["stall", "outage"]) -> None:
        self.trigger, self.action = trigger, action
        self.hit.clear()
        self.armed = True

    def url(self) -> str:
        """The database URL through this proxy."""
        return proxied_url(self.dialect, self.port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def go_down(self) -> None:
        """Abort every connection now and refuse new ones for :attr:`outage` seconds."""
        self.cuts += 1
        loop = asyncio.get_running_loop()
        self._down_until = loop.time() + self.outage
        self.back.clear()
        loop.call_later(self.outage, self.back.set)
        for w in list(self._writers):
            w.transport.abort()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if asyncio.get_running_loop().time() < self._down_until:
            cw.transport.abort()  # the server is "down": connection refused
            return
        try:
            sr, sw = await asyncio.open_connection(*self.target)
        except OSError:
            cw.transport.abort()
            return
        self._writers |= {cw, sw}
        tasks = {
            asyncio.ensure_future(self._up(ClientStream(cr, self.dialect), sw)),
            asyncio.ensure_future(self._down(sr, cw)),
        }
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        for w in (cw, sw):
            self._writers.discard(w)
            w.transport.abort()

    async def _up(self, client: ClientStream, w: asyncio.StreamWriter) -> None:
        while data := await client.read():
            if self.armed and client.carries(self.trigger):
                self.armed = False
                self.hit_port = w.get_extra_info("sockname")[1]
                self.hit.set()
                if self.action == "outage":
                    self.go_down()
                    return
                await self.release.wait()
            if self.frozen:
                await self.release.wait()
            w.write(data)
            await w.drain()

    async def _down(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        if self.hold_eof:
            # the server's last bytes (a FATAL error) reached the client, its end of
            # stream waits: the client has read an error on a connection it thinks open
            self.eofs_held += 1
            await self.release.wait()


def proxied_url(dialect: Dialect, port: int) -> str:
    """The database URL of ``dialect`` with its server reached on ``port``."""
    url = sa.make_url(url_of(dialect)).set(port=port)
    return url.render_as_string(hide_password=False)


async def fault_proxy(backend: str) -> AsyncIterator[FaultProxy]:
    """A fixture (wrap it with ``pytest.fixture``): the proxy in front of the SQL server
    of the test's ``backend``."""
    p = FaultProxy(dialect_of(backend))
    await p.start()
    try:
        yield p
    finally:
        await p.close()


def work_behind(make_queue: QueueFactory, url: str) -> tuple[Queue, Any, list[int]]:
    """A queue whose SQL is reached at ``url`` (a proxy's; not connected yet) and the
    task ``work``, enqueued on a direct queue: each run of ``work(n)`` is noted in the
    list returned, and returns ``n * 2``."""
    direct = make_queue()
    cut = make_queue(database_url=url)
    runs: list[int] = []

    @direct.task
    async def work(n: int) -> int:
        runs.append(n)
        return n * 2

    cut.task(work.fn)
    return cut, work, runs
