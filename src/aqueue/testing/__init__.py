"""Test an aqueue app without servers: an in-memory store and broker that implement the
same interfaces as the SQL store and the Redis broker, a clock the test moves, and
:func:`drive`, which runs a queue's real runner on them::

    async with aqueue.testing.drive(queue) as q:
        job = await send.enqueue(1)
        await q.drain()                      # until no job is runnable
        assert (await job.info()).status == "done"
        await q.advance(60)                  # delayed jobs, retries, cron ticks

A pytest plugin (registered as ``aqueue``) provides the ``aqueue_clock`` and
``aqueue_drive`` fixtures. See docs/how-to/testing.md."""

from ._broker import MemoryBroker
from ._clock import FakeClock
from ._drive import DEFAULT_CONFIG, Driver, drive
from ._store import MemoryStore
from ._waiters import MemoryFinishWaiters

__all__ = [
    "DEFAULT_CONFIG",
    "Driver",
    "FakeClock",
    "MemoryBroker",
    "MemoryFinishWaiters",
    "MemoryStore",
    "drive",
]
