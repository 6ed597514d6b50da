"""aqueue under benchmark: ``python -m aqueue run app_aqueue:queue --concurrency 100``.

The same module serves every aqueue row: with ``BENCH_AQ_REDIS``/``BENCH_AQ_DATABASE`` set
(MariaDB or PostgreSQL + the shared Redis), or with neither, the embedded default (SQLite +
a private Redis under ``AQUEUE_HOME``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import _harness
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aqueue import Queue


def _observe(setting: str) -> None:
    """``BENCH_AQ_OBSERVE``: what the worker observes, for the cost of metrics and
    tracing in W2 (see docs/operations.md, "Cost"). ``metrics``: the Prometheus
    counters and histograms (no HTTP port: the scrape is not the cost); ``api``: metrics
    + tracing with the OpenTelemetry API only (no SDK: aqueue's own part); ``sdk1``:
    metrics + tracing, the SDK sampling 1 % (``ParentBased(TraceIdRatioBased(0.01))``,
    batch processor, an exporter that drops the spans) with ``runs="all"`` (every run
    opens a span); ``sdk1s``: the same with ``runs="sampled"``, the default (the runs of
    unsampled enqueues open none); ``sdk``: every span recorded."""
    if not setting:
        return
    import aqueue.metrics

    aqueue.metrics.install()
    if setting == "metrics":
        return
    import aqueue.otel

    provider = None
    if setting in ("sdk1", "sdk1s", "sdk"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        sampler = ALWAYS_ON if setting == "sdk" else ParentBased(TraceIdRatioBased(0.01))
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(Drop()))
    aqueue.otel.instrument(
        tracer_provider=provider, runs="sampled" if setting == "sdk1s" else "all"
    )


_observe(os.environ.get("BENCH_AQ_OBSERVE", ""))

_COMPRESSION = os.environ.get("BENCH_AQ_COMPRESSION")

queue = Queue(
    "bench",
    redis_url=os.environ.get("BENCH_AQ_REDIS") or None,
    database_url=os.environ.get("BENCH_AQ_DATABASE") or None,
    table=os.environ.get("BENCH_AQ_TABLE", "bench_jobs"),
    key_prefix=os.environ.get("BENCH_AQ_PREFIX", "bench"),
    # BENCH_AQ_COMPRESS_OVER: "off" stores every payload as JSON (the default: 4096).
    compress_over=(
        None
        if os.environ.get("BENCH_AQ_COMPRESS_OVER") == "off"
        else int(os.environ.get("BENCH_AQ_COMPRESS_OVER") or 4096)
    ),
    # BENCH_AQ_COMPRESSION: "zstd" (aqueue[zstd]) instead of the default zlib (unset or
    # zlib: the Queue's default, so that the app also runs an aqueue from before the
    # option).
    **({"compression": _COMPRESSION} if _COMPRESSION not in (None, "", "zlib") else {}),
)


@queue.task
async def noop(i: int) -> None:
    await _harness.noop(i)


@queue.task
async def sleep(i: int) -> None:
    await _harness.sleep(i)


@queue.task
async def blob(data: str) -> None:
    await _harness.blob(data)


@queue.task
async def lat(enqueued_at: float) -> None:
    await _harness.lat(enqueued_at)


@queue.on_startup
async def _ready(state: dict[str, Any]) -> None:
    await _harness.worker_ready("aqueue")


TASKS = {"noop": noop, "sleep": sleep, "lat": lat, "blob": blob}


class Producer:
    app: AsyncEngine | None = None

    async def open(self) -> None:
        await queue.connect()

    async def open_app(self) -> None:
        """The application side of W1's transactional variant: its own engine (as many
        connections as aqueue's store pool) and its own table in the queue's database."""
        self.app = create_async_engine(
            os.environ["BENCH_AQ_DATABASE"], pool_size=10, max_overflow=0
        )
        self.app_table = os.environ["BENCH_AQ_TABLE"] + "_app"
        async with self.app.begin() as conn:
            await conn.execute(
                sa.text(
                    f"CREATE TABLE IF NOT EXISTS {self.app_table} "
                    "(id BIGINT PRIMARY KEY, note VARCHAR(64) NOT NULL)"
                )
            )
        self.app_insert = sa.text(f"INSERT INTO {self.app_table} (id, note) VALUES (:id, :note)")

    async def enqueue(self, kind: str, arg: Any) -> None:
        await TASKS[kind].enqueue(arg)

    async def enqueue_in_transaction(self, kind: str, i: int, *, with_job: bool = True) -> None:
        """One application transaction: a row of its own and the job, committed together
        (the job is pushed to Redis after the COMMIT); without the job: the baseline."""
        assert self.app is not None
        async with self.app.begin() as conn:
            await conn.execute(self.app_insert, {"id": i, "note": "order"})
            if with_job:
                await TASKS[kind].options(connection=conn).enqueue(i)

    async def enqueue_batch(self, kind: str, args: Sequence[Any]) -> None:
        await queue.enqueue_many([(TASKS[kind], (a,), {}) for a in args])

    async def close(self) -> None:
        await queue.close()
        if self.app is not None:
            await self.app.dispose()
