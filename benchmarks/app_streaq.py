"""streaQ under benchmark: ``streaq run app_streaq:worker``."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import _harness
from streaq import Worker


@asynccontextmanager
async def _lifespan() -> AsyncIterator[None]:
    # streaq's CLI logs every task start and finish at INFO and has no option for the
    # level: keep warnings only, as for every other system in the benchmark.
    logging.getLogger("streaq").setLevel(logging.WARNING)
    await _harness.worker_ready("streaq")
    yield None


worker = Worker(
    redis_url=_harness.SYSTEM_REDIS,
    concurrency=_harness.CONCURRENCY,
    queue_name="bench",
    lifespan=_lifespan,
    anyio_kwargs={"use_uvloop": True} if importlib.util.find_spec("uvloop") else None,
)


@worker.task
async def noop(i: int) -> None:
    await _harness.noop(i)


@worker.task
async def sleep(i: int) -> None:
    await _harness.sleep(i)


@worker.task
async def blob(data: str) -> None:
    await _harness.blob(data)


@worker.task
async def lat(enqueued_at: float) -> None:
    await _harness.lat(enqueued_at)


TASKS = {"noop": noop, "sleep": sleep, "lat": lat, "blob": blob}


class Producer:
    async def open(self) -> None:
        self._stack = AsyncExitStack()
        await self._stack.enter_async_context(worker)

    async def enqueue(self, kind: str, arg: Any) -> None:
        await TASKS[kind].enqueue(arg)

    async def enqueue_batch(self, kind: str, args: Sequence[Any]) -> None:
        await worker.enqueue_many([TASKS[kind].enqueue(a) for a in args])

    async def close(self) -> None:
        await self._stack.aclose()
