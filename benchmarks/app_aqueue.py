"""aqueue under benchmark: ``python -m aqueue run app_aqueue:queue --concurrency 100``.

The same module serves both aqueue rows: with ``BENCH_AQ_REDIS``/``BENCH_AQ_DATABASE`` set
(MariaDB + the shared Redis), or with neither, the embedded default (SQLite + a private
Redis under ``AQUEUE_HOME``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import _harness

from aqueue import Queue

queue = Queue(
    "bench",
    redis_url=os.environ.get("BENCH_AQ_REDIS") or None,
    database_url=os.environ.get("BENCH_AQ_DATABASE") or None,
    table=os.environ.get("BENCH_AQ_TABLE", "bench_jobs"),
    key_prefix=os.environ.get("BENCH_AQ_PREFIX", "bench"),
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
    async def open(self) -> None:
        await queue.connect()

    async def enqueue(self, kind: str, arg: Any) -> None:
        await TASKS[kind].enqueue(arg)

    async def enqueue_batch(self, kind: str, args: Sequence[Any]) -> None:
        await queue.enqueue_many([(TASKS[kind], (a,), {}) for a in args])

    async def close(self) -> None:
        await queue.close()
