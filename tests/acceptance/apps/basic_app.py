"""Acceptance-test app (copied into a temp dir as ``app.py``).

Every setting comes from environment variables the test sets, so each test gets its own
queue name, table and key prefix on the shared Redis and MariaDB servers.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis.asyncio as aioredis

from aqueue import Queue, current_job

PREFIX = os.environ["AQT_PREFIX"]
REDIS_URL = os.environ["AQT_REDIS_URL"]

queue = Queue(
    os.environ["AQT_QUEUE"],
    redis_url=REDIS_URL,
    database_url=os.environ["AQT_DATABASE_URL"],
    table=os.environ["AQT_TABLE"],
    key_prefix=PREFIX,
)

not_a_queue = 42


@queue.on_startup
async def register_pid(state: dict[str, Any]) -> None:
    """Each runner process announces its pid in the Redis set ``<prefix>:pids``."""
    r = aioredis.Redis.from_url(REDIS_URL)
    state["redis"] = r
    await r.sadd(f"{PREFIX}:pids", os.getpid())


@queue.on_shutdown
async def close_redis(state: dict[str, Any]) -> None:
    r = state.pop("redis", None)
    if r is not None:
        await r.aclose()


@queue.task
async def add(a: int, b: int) -> int:
    return a + b


@queue.task
async def slow(i: int) -> int:
    """Record the run (job id into ``<prefix>:runs``), then sleep ``$AQT_SLEEP`` seconds."""
    ctx = current_job()
    await ctx.state["redis"].rpush(f"{PREFIX}:runs", ctx.job_id)
    await asyncio.sleep(float(os.environ.get("AQT_SLEEP", "0")))
    return i
