"""Prometheus metrics (``pip install aqueue[metrics]``): counters and histograms fed by
the observation hooks (``aqueue._observe``), gauges read from the store and Redis when
scraped (cached for ``BACKLOG_MAX_AGE`` seconds).

Exposed by a runner on ``--metrics-port`` (``RunnerConfig.metrics_port``): under
``--processes N`` each runner process serves its own port, ``metrics_port + i`` for
process ``i`` (so a counter is never shared between processes and nothing needs
``PROMETHEUS_MULTIPROC_DIR``; scrape every port, and sum the counters over them). The
web app serves them at ``/metrics`` through :func:`metrics_asgi_app`.

This module imports ``prometheus_client``: ``import aqueue`` never imports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import _observe
from ._backend import Backend
from ._jobmetrics import JobMetrics
from ._models import JobStatus

__all__ = [
    "BACKLOG_MAX_AGE",
    "REGISTRY",
    "MetricsExporter",
    "install",
    "metrics_asgi_app",
    "serve_runner_metrics",
    "uninstall",
]

log = logging.getLogger("aqueue.metrics")

BACKLOG_MAX_AGE = 1.0
"""Seconds a backlog reading (job counts per status, runners alive) is reused: a scrape
more often than this costs the store nothing."""

REGISTRY = CollectorRegistry()
"""aqueue's metrics (its own registry: mounting it adds nothing of the process's)."""

_observer = JobMetrics()
REGISTRY.register(_observer)

_users = 0
_users_lock = threading.Lock()


def install() -> None:
    """Count this process's enqueues and runs (the runner's metrics port and
    :func:`metrics_asgi_app` do it themselves); each call wants one :func:`uninstall`."""
    global _users
    with _users_lock:
        _users += 1
        _observe.install(_observer)


def uninstall() -> None:
    global _users
    with _users_lock:
        _users = max(0, _users - 1)
        if _users == 0:
            _observe.uninstall(_observer)


Reading = tuple[dict[JobStatus, int], int]
"""Jobs per status, and runners alive, of one queue."""


class _Source:
    def __init__(self, read: Callable[[], Awaitable[Reading]]) -> None:
        self.read = read
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.value: Reading | None = None
        self.read_at = float("-inf")
        self.users = 1

    async def refresh(self) -> None:
        if time.monotonic() - self.read_at < BACKLOG_MAX_AGE:
            return
        try:
            self.value = await self.read()
        except Exception as exc:  # the store or Redis down: the last reading stays
            log.warning("metrics: backlog reading failed: %s", exc)
        self.read_at = time.monotonic()

    def refresh_from_thread(self) -> None:
        """From the exporter's thread: the reading runs on the queue's loop."""
        if threading.get_ident() == self.loop_thread or self.loop.is_closed():
            return  # on the loop itself: refreshed before (metrics_asgi_app)
        if time.monotonic() - self.read_at < BACKLOG_MAX_AGE:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.refresh(), self.loop).result(timeout=5)
        except Exception as exc:
            log.warning("metrics: backlog reading did not finish: %r", exc)


class _Backlog(Collector):
    """``aqueue_jobs{queue,status}`` and ``aqueue_runners_alive{queue}``, read when
    scraped."""

    def __init__(self) -> None:
        self.sources: MutableMapping[str, _Source] = {}

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        for src in list(self.sources.values()):
            src.refresh_from_thread()
        return iter(self._families(fill=True))

    def _families(self, *, fill: bool = False) -> list[Metric]:
        jobs = GaugeMetricFamily(
            "aqueue_jobs", "Jobs in SQL per status (read when scraped).", labels=["queue", "status"]
        )
        alive = GaugeMetricFamily(
            "aqueue_runners_alive", "Runners whose heartbeat is current.", labels=["queue"]
        )
        if fill:
            for queue, src in list(self.sources.items()):
                if src.value is None:
                    continue
                counts, runners = src.value
                for status in JobStatus:
                    jobs.add_metric([queue, status.value], counts.get(status, 0))
                alive.add_metric([queue], runners)
        return [jobs, alive]


_backlog = _Backlog()
REGISTRY.register(_backlog)


def _add_source(queue: str, read: Callable[[], Awaitable[Reading]]) -> _Source:
    src = _backlog.sources.get(queue)
    if src is None or src.loop.is_closed():
        src = _backlog.sources[queue] = _Source(read)
    else:
        src.users += 1
    return src


def _drop_source(queue: str, src: _Source) -> None:
    src.users -= 1
    if src.users <= 0 and _backlog.sources.get(queue) is src:
        del _backlog.sources[queue]


def _reader(
    get_backend: Callable[[], Awaitable[Backend]], queue: str
) -> Callable[[], Awaitable[Reading]]:
    async def read() -> Reading:
        be = await get_backend()
        counts = await be.store.count_by_status(queue)
        runners = await be.broker.runners()
        return counts, sum(1 for alive in runners.values() if alive)

    return read


class MetricsExporter:
    """A runner's metrics port: its HTTP server and its backlog reading."""

    def __init__(self, be: Backend, port: int, host: str) -> None:
        slot = int(os.environ.get("AQUEUE_PROCESS_SLOT", "0") or 0)
        self.port = port + slot if port else 0

        async def backend() -> Backend:
            return be

        self._queue = be.queue_name
        self._server: Any = None
        self._source: _Source | None = _add_source(be.queue_name, _reader(backend, be.queue_name))
        install()
        try:
            self._server, self._thread = start_http_server(self.port, host, REGISTRY)
        except BaseException:
            self.close()
            raise
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(5)
            self._server = None
        if self._source is not None:
            _drop_source(self._queue, self._source)
            self._source = None
            uninstall()


def serve_runner_metrics(be: Backend, port: int, host: str = "127.0.0.1") -> MetricsExporter:
    """Start a runner's metrics port (``port`` + this process's ``--processes`` slot; 0:
    any free port). Called by the runner when ``RunnerConfig.metrics_port`` is set."""
    return MetricsExporter(be, port, host)


class _QueueLike(Protocol):
    @property
    def name(self) -> str: ...

    async def _backend(self) -> Backend: ...


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def metrics_asgi_app(queue: _QueueLike) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app answering every GET with the metrics text (mount it at ``/metrics``
    behind the dashboard's auth). It counts the enqueues of this process too (the HTTP
    API's), and reads ``queue``'s backlog when scraped."""
    install()
    source: list[_Source] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # standalone: nothing to start or stop
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8")
            return
        if not source or source[0].loop.is_closed():
            source[:] = [_add_source(queue.name, _reader(queue._backend, queue.name))]
        await source[0].refresh()
        await _respond(send, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)

    return app


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})
