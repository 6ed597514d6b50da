"""arq under benchmark: ``arq app_arq.WorkerSettings --custom-log-dict app_arq.LOG_CONFIG``."""

from __future__ import annotations

from typing import Any

import _harness
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

_harness.install_uvloop()

REDIS = RedisSettings.from_dsn(_harness.SYSTEM_REDIS)


async def noop(ctx: dict[str, Any], i: int) -> None:
    await _harness.noop(i)


async def sleep(ctx: dict[str, Any], i: int) -> None:
    await _harness.sleep(i)


async def blob(ctx: dict[str, Any], data: str) -> None:
    await _harness.blob(data)


async def lat(ctx: dict[str, Any], enqueued_at: float) -> None:
    await _harness.lat(enqueued_at)


async def _ready(ctx: dict[str, Any]) -> None:
    await _harness.worker_ready("arq")


class WorkerSettings:
    functions = [noop, sleep, lat, blob]
    redis_settings = REDIS
    max_jobs = _harness.CONCURRENCY
    on_startup = _ready


LOG_CONFIG = {
    # arq's default config logs every job start and finish at INFO: keep warnings only,
    # as for every other system in the benchmark.
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


class Producer:
    async def open(self) -> None:
        self.pool: ArqRedis = await create_pool(REDIS)

    async def enqueue(self, kind: str, arg: Any) -> None:
        await self.pool.enqueue_job(kind, arg)

    async def close(self) -> None:
        await self.pool.aclose()
