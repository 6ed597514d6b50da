"""What every benchmarked process shares: the job bodies and how a job reports.

Imported by each system's app module (``app_*.py``, loaded by that system's own worker CLI)
and by the producer. Everything comes from environment variables set by ``run.py``:

``BENCH_HARNESS_REDIS``  Redis URL (with its DB number) of the harness's own keys
``BENCH_RUN``            the run's key prefix: ``bench:<run>:count``, ``:done``, ...
``BENCH_TARGET``         jobs in the run: the job whose INCR reaches it marks the end
``BENCH_SYSTEM_REDIS``   Redis URL (with its DB number) the system under test uses
``BENCH_CONCURRENCY``    handlers at once in the worker (100)
``BENCH_SLEEP``          seconds each W3 job sleeps (0.01)

Completion is counted the same way for every system: each job ``INCR``s one counter in
the harness's Redis DB; the job whose increment reaches ``BENCH_TARGET`` pushes its wall
time to ``bench:<run>:done``, which the harness waits on with ``BLPOP``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from redis.asyncio import Redis

HARNESS_REDIS = os.environ.get("BENCH_HARNESS_REDIS", "redis://127.0.0.1:6379/9")
SYSTEM_REDIS = os.environ.get("BENCH_SYSTEM_REDIS", "redis://127.0.0.1:6379/10")
RUN = os.environ.get("BENCH_RUN", "dev")
TARGET = int(os.environ.get("BENCH_TARGET", "0"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "100"))
SLEEP = float(os.environ.get("BENCH_SLEEP", "0.01"))

KINDS = ("noop", "sleep", "lat")
"""The three job kinds: no-op (W1, W2), ``asyncio.sleep(SLEEP)`` (W3), latency probe (W4).
Each takes one positional argument: an index, or for ``lat`` the enqueue timestamp."""

_client: Redis | None = None
_client_loop: asyncio.AbstractEventLoop | None = None
_first_seen = False


def key(name: str, run: str | None = None) -> str:
    return f"bench:{run or RUN}:{name}"


def redis() -> Redis:
    """A client of the harness's Redis, one per event loop."""
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client_loop is not loop:
        _client = Redis.from_url(HARNESS_REDIS)
        _client_loop = loop
    return _client


async def _first() -> None:
    global _first_seen
    if not _first_seen:
        _first_seen = True
        await redis().set(key("first"), repr(time.time()), nx=True)


async def _count(n: int) -> None:
    if n == TARGET:
        await redis().rpush(key("done"), repr(time.time()))


async def noop(i: int) -> None:
    await _first()
    await _count(await redis().incr(key("count")))


async def sleep(i: int) -> None:
    await _first()
    await asyncio.sleep(SLEEP)
    await _count(await redis().incr(key("count")))


async def lat(enqueued_at: float) -> None:
    """W4: record start time minus the producer's clock read before ``enqueue()``."""
    started = time.time()
    async with redis().pipeline(transaction=False) as pipe:
        pipe.rpush(key("lat"), repr(started - enqueued_at))
        pipe.incr(key("count"))
        _, n = await pipe.execute()
    await _count(n)


BODIES = {"noop": noop, "sleep": sleep, "lat": lat}


async def worker_ready(system: str) -> None:
    """Called from each system's startup hook: the worker is connected and about to take
    jobs. Records the time, the pid and the event loop class."""
    loop = asyncio.get_running_loop()
    info = {
        "t": time.time(),
        "pid": os.getpid(),
        "system": system,
        "loop": f"{type(loop).__module__}.{type(loop).__name__}",
    }
    await redis().rpush(key("ready"), json.dumps(info))


def install_uvloop() -> None:
    """For the systems whose CLI creates a plain asyncio loop (arq, SAQ): make it a uvloop
    loop, as aqueue's and taskiq's CLIs do by themselves when uvloop is installed."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
