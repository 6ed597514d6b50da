"""The pytest plugin of ``aqueue.testing`` (entry point ``aqueue`` in ``pytest11``, so
installing aqueue makes it available): the ``aqueue_clock`` and ``aqueue_drive``
fixtures. ``aqueue_drive`` is an async fixture declared through pytest-asyncio, so it
works under its ``strict`` and ``auto`` modes alike::

    async def test_welcome(aqueue_drive):
        q = await aqueue_drive(app.queue)
        await app.send_welcome.enqueue(42)
        await q.drain()

aqueue itself is imported only when a fixture is used."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._app import Queue
    from ._clock import FakeClock
    from ._drive import Driver

Start = Callable[..., Awaitable["Driver"]]


def _clock() -> FakeClock:
    """A :class:`FakeClock` at the real time; ``aqueue_drive`` runs its queues on it."""
    from ._clock import FakeClock

    return FakeClock()


async def _drive(aqueue_clock: FakeClock) -> AsyncIterator[Start]:
    """``await aqueue_drive(queue, **options)``: the queue driven in memory (see
    ``aqueue.testing.drive``) on ``aqueue_clock`` until the test ends, then put back."""
    from ._drive import drive

    async with AsyncExitStack() as stack:

        async def start(queue: Queue, **options: Any) -> Driver:
            options.setdefault("clock", aqueue_clock)
            return await stack.enter_async_context(drive(queue, **options))

        yield start


def _async_fixture(fn: Callable[..., Any], name: str) -> Any:
    """An async fixture under pytest-asyncio whatever its mode (plain pytest runs no
    coroutine fixture: the error then says what to install)."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - a setup without pytest-asyncio

        def missing() -> None:
            raise pytest.UsageError("the aqueue_drive fixture needs pytest-asyncio installed")

        return pytest.fixture(name=name)(missing)
    return pytest_asyncio.fixture(name=name)(fn)


aqueue_clock = pytest.fixture(name="aqueue_clock")(_clock)
aqueue_drive = _async_fixture(_drive, "aqueue_drive")
