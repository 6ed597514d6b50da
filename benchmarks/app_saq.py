"""SAQ under benchmark: ``saq app_saq.settings``."""

from __future__ import annotations

from typing import Any

import _harness
from saq import Queue

_harness.install_uvloop()

queue = Queue.from_url(_harness.SYSTEM_REDIS, name="bench")


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    await _harness.noop(i)


async def sleep(ctx: dict[str, Any], *, i: int) -> None:
    await _harness.sleep(i)


async def blob(ctx: dict[str, Any], *, data: str) -> None:
    await _harness.blob(data)


async def lat(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    await _harness.lat(enqueued_at)


async def _ready(ctx: dict[str, Any]) -> None:
    await _harness.worker_ready("saq")


settings = {
    "queue": queue,
    "functions": [noop, sleep, lat, blob],
    "concurrency": _harness.CONCURRENCY,
    "startup": _ready,
}

_ARG = {"noop": "i", "sleep": "i", "lat": "enqueued_at", "blob": "data"}


class Producer:
    async def open(self) -> None:
        await queue.connect()

    async def enqueue(self, kind: str, arg: Any) -> None:
        await queue.enqueue(kind, **{_ARG[kind]: arg})

    async def close(self) -> None:
        await queue.disconnect()
