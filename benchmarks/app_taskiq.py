"""taskiq under benchmark: ``taskiq worker app_taskiq:broker --workers 1
--max-async-tasks 100`` on taskiq-redis's ``RedisStreamBroker`` (the broker with
acknowledgements, as its README recommends)."""

from __future__ import annotations

from typing import Any

import _harness
from taskiq import TaskiqEvents, TaskiqState
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(url=_harness.SYSTEM_REDIS, queue_name="bench")


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    await _harness.noop(i)


@broker.task(task_name="sleep")
async def sleep(i: int) -> None:
    await _harness.sleep(i)


@broker.task(task_name="blob")
async def blob(data: str) -> None:
    await _harness.blob(data)


@broker.task(task_name="lat")
async def lat(enqueued_at: float) -> None:
    await _harness.lat(enqueued_at)


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def _ready(state: TaskiqState) -> None:
    await _harness.worker_ready("taskiq")


TASKS = {"noop": noop, "sleep": sleep, "lat": lat, "blob": blob}


class Producer:
    async def open(self) -> None:
        await broker.startup()

    async def enqueue(self, kind: str, arg: Any) -> None:
        await TASKS[kind].kiq(arg)

    async def close(self) -> None:
        await broker.shutdown()
