"""A TCP proxy in front of MariaDB that injects faults at a chosen statement.

Armed with a ``trigger`` (bytes of a client packet, e.g. the COM_QUERY of ``COMMIT``) and
an action, it acts on the first packet carrying the trigger:

- ``stall``: hold the packet until :attr:`FaultProxy.release` is set (a statement in
  flight for as long as the test wants);
- ``outage``: drop the packet, abort every connection through the proxy and refuse new
  ones for :attr:`FaultProxy.outage` seconds (a server killed and restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

import sqlalchemy as sa

from ..conftest import MYSQL_URL

COMMIT = b"\x03COMMIT"  # COM_QUERY "COMMIT" (not "SET AUTOCOMMIT = 0")
CLAIM = b"SET status = 'running'"  # the claim's UPDATE


class FaultProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.trigger = b""
        self.action: Literal["stall", "outage"] = "stall"
        self.armed = False
        self.hit = asyncio.Event()
        """Set when the armed trigger went by."""
        self.release = asyncio.Event()
        self.outage = 0.5
        self.cuts = 0
        self.back = asyncio.Event()
        """Set when the last outage is over."""
        self.port = 0
        self._down_until = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def arm(self, trigger: bytes, action: Literal["stall", "outage"]) -> None:
        self.trigger, self.action = trigger, action
        self.hit.clear()
        self.armed = True

    def url(self) -> str:
        """The database URL through this proxy."""
        return sa.make_url(MYSQL_URL).set(port=self.port).render_as_string(hide_password=False)

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
            asyncio.ensure_future(self._pipe(cr, sw, up=True)),
            asyncio.ensure_future(self._pipe(sr, cw, up=False)),
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

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, *, up: bool) -> None:
        while data := await r.read(65536):
            if up and self.armed and self.trigger in data:
                self.armed = False
                self.hit.set()
                if self.action == "outage":
                    self.go_down()
                    return
                await self.release.wait()
            w.write(data)
            await w.drain()


async def fault_proxy() -> AsyncIterator[FaultProxy]:
    url = sa.make_url(MYSQL_URL)
    p = FaultProxy((url.host or "127.0.0.1", url.port or 3306))
    await p.start()
    try:
        yield p
    finally:
        await p.close()
