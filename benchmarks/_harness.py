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

The per-job ``INCR`` goes through ``Counter``, a minimal RESP client of the harness's own
(one connection per process, replies matched in order), not through redis-py: a redis-py
command costs about 60 µs of CPU here, as much as a whole aqueue job, and the count would
then weigh on every system's no-op figure more than the system itself. Each job still
makes its own round trip to Redis and awaits the reply.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from typing import Any
from urllib.parse import urlparse

from redis.asyncio import Redis

HARNESS_REDIS = os.environ.get("BENCH_HARNESS_REDIS", "redis://127.0.0.1:6379/9")
SYSTEM_REDIS = os.environ.get("BENCH_SYSTEM_REDIS", "redis://127.0.0.1:6379/10")
RUN = os.environ.get("BENCH_RUN", "dev")
TARGET = int(os.environ.get("BENCH_TARGET", "0"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "100"))
SLEEP = float(os.environ.get("BENCH_SLEEP", "0.01"))

KINDS = ("noop", "sleep", "lat", "blob")
"""The job kinds: no-op (W1, W2, W5), ``asyncio.sleep(SLEEP)`` (W3), latency probe (W4), and
a no-op carrying a payload (W5). Each takes one positional argument: an index, for ``lat``
the enqueue timestamp, for ``blob`` a string of the payload size."""

_client: Redis | None = None
_client_loop: asyncio.AbstractEventLoop | None = None
_first_seen = False


def key(name: str, run: str | None = None) -> str:
    return f"bench:{run or RUN}:{name}"


class _Resp(asyncio.Protocol):
    """Just enough RESP for INCR/RPUSH/SELECT: integer, status and error replies."""

    def __init__(self) -> None:
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport
        self.waiters: collections.deque[asyncio.Future[object]] = collections.deque()
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        start = 0
        while True:
            end = buf.find(b"\r\n", start)
            if end < 0:
                break
            line, start = buf[start:end], end + 2
            fut = self.waiters.popleft()
            if fut.done():
                continue
            if line[:1] == b":":
                fut.set_result(int(line[1:]))
            elif line[:1] == b"+":
                fut.set_result(line[1:].decode())
            else:
                fut.set_exception(RuntimeError(f"Redis replied {line!r}"))
        self.buf = buf[start:]

    def connection_lost(self, exc: Exception | None) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError(f"harness counter connection lost: {exc}"))

    def send(self, *commands: tuple[bytes, ...]) -> list[asyncio.Future[object]]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        out = []
        parts = []
        for args in commands:
            parts.append(b"*%d\r\n" % len(args))
            for a in args:
                parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
            fut: asyncio.Future[object] = loop.create_future()
            self.waiters.append(fut)
            out.append(fut)
        self.transport.write(b"".join(parts))
        return out


class Counter:
    """The per-job count (see the module doc), one connection per event loop."""

    _by_loop: dict[int, asyncio.Future[Counter]] = {}

    def __init__(self, proto: _Resp) -> None:
        self.proto = proto
        self.count_key = key("count").encode()
        self.lat_key = key("lat").encode()

    @classmethod
    async def get(cls) -> Counter:
        loop = asyncio.get_running_loop()
        fut = cls._by_loop.get(id(loop))
        if fut is not None and fut.done() and not fut.exception():
            got = fut.result()
            if not got.proto.transport.is_closing():
                return got
            fut = None
        if fut is None or (fut.done() and fut.exception()):
            fut = cls._by_loop[id(loop)] = loop.create_future()
            try:
                fut.set_result(await cls._connect())
            except BaseException as exc:
                fut.set_exception(exc)
                raise
        return await asyncio.shield(fut)

    @staticmethod
    async def _connect() -> Counter:
        url = urlparse(HARNESS_REDIS)
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            _Resp, url.hostname or "127.0.0.1", url.port or 6379
        )
        db = (url.path or "/0").strip("/") or "0"
        await proto.send((b"SELECT", db.encode()))[0]
        return Counter(proto)

    async def incr(self) -> int:
        n = await self.proto.send((b"INCR", self.count_key))[0]
        assert isinstance(n, int)
        return n

    async def record_latency(self, seconds: float) -> int:
        _, n = await asyncio.gather(
            *self.proto.send(
                (b"RPUSH", self.lat_key, repr(seconds).encode()), (b"INCR", self.count_key)
            )
        )
        assert isinstance(n, int)
        return n


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
    await _count(await (await Counter.get()).incr())


async def blob(data: str) -> None:
    await _first()
    await _count(await (await Counter.get()).incr())


async def sleep(i: int) -> None:
    await _first()
    await asyncio.sleep(SLEEP)
    await _count(await (await Counter.get()).incr())


async def lat(enqueued_at: float) -> None:
    """W4: record start time minus the producer's clock read before ``enqueue()``."""
    started = time.time()
    await _count(await (await Counter.get()).record_latency(started - enqueued_at))


BODIES = {"noop": noop, "sleep": sleep, "lat": lat, "blob": blob}


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
