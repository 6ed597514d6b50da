"""The dashboard and API tested in-process: the app over a queue driven in memory
(``aqueue.testing.drive``: the real runner, no server), called through httpx's ASGI
transport. Users: ``admin`` (all), ``viewer`` (read_only); the API token (all)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

import aqueue
import aqueue.web
from aqueue.testing import Driver, drive

TOKEN = "api-token-0123456789abcdef"
USERS = {"admin": ("admin-pw", "all"), "viewer": ("viewer-pw", "read_only")}


def basic(user: str) -> dict[str, str]:
    raw = f"{user}:{USERS[user][0]}".encode()
    return {"authorization": "Basic " + base64.b64encode(raw).decode()}


RELEASE = asyncio.Event()
"""Set to let the ``hold`` jobs finish (a job running meanwhile holds a lease)."""


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Until ``check()`` is true, or fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def make_queue() -> aqueue.Queue:
    queue = aqueue.Queue("webq", redis_url="redis://127.0.0.1:1", database_url="sqlite://")

    @queue.task(name="add", retries=0)
    async def add(a: int, b: int) -> int:
        return a + b

    @queue.task(name="boom", retries=0)
    async def boom(note: str = "") -> None:
        raise ValueError(f"disk full {note}")

    @queue.task(name="hold", retries=0)
    async def hold() -> str:
        await RELEASE.wait()
        return "released"

    @queue.periodic(every=300)
    async def tidy() -> None:
        return None

    return queue


@pytest.fixture
async def driven() -> AsyncIterator[Driver]:
    RELEASE.clear()
    async with drive(make_queue()) as d:
        try:
            yield d
        finally:
            RELEASE.set()


Client = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client(driven: Driver) -> AsyncIterator[Client]:
    app = aqueue.web.app(
        driven.queue,
        auth=aqueue.web.any_of(
            aqueue.web.basic_auth(USERS),  # type: ignore[arg-type]
            aqueue.web.token_auth(TOKEN),
        ),
    )
    made: list[httpx.AsyncClient] = []

    def factory(user: str | None = "admin", **headers: str) -> httpx.AsyncClient:
        h = dict(basic(user)) if user else {}
        h.update(headers)
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=h
        )
        made.append(c)
        return c

    yield factory
    for c in made:
        await c.aclose()
