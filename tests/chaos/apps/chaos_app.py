"""Chaos-suite app (copied into a temp dir as ``app.py``).

Every setting comes from environment variables the test sets:

- ``AQC_QUEUE``, ``AQC_REDIS_URL``, ``AQC_DATABASE_URL``, ``AQC_TABLE``, ``AQC_PREFIX``:
  the queue under test (its Redis is usually one the test starts and disturbs);
- ``AQC_CHECK_URL``, ``AQC_CHECK_KEY``: where handlers record their executions (a list on
  a Redis the test never disturbs), one JSON line per event;
- ``AQC_WORK_SLEEP``: when set, overrides the ``sleep_s`` argument of ``work``;
- ``AQC_STUBBORN_TIMEOUT``: the time limit of the ``stubborn`` task (default 0.5 s).

Events: ``{"j": job id, "p": pid, "r": runner id, "a": attempt, "t": lease token,
"n": task, "k": kind, "ts": wall-clock microseconds}`` with kind ``s`` (handler
started), ``e`` (handler returned), ``x`` (handler left with an exception, including a
cancellation and ``fail_once``'s planned retry).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import redis.asyncio as aioredis

from aqueue import Queue, Retry, current_job

CHECK_URL = os.environ.get("AQC_CHECK_URL", "")
CHECK_KEY = os.environ.get("AQC_CHECK_KEY", "")
WORK_SLEEP = os.environ.get("AQC_WORK_SLEEP")

queue = Queue(
    os.environ["AQC_QUEUE"],
    redis_url=os.environ["AQC_REDIS_URL"],
    database_url=os.environ["AQC_DATABASE_URL"],
    table=os.environ["AQC_TABLE"],
    key_prefix=os.environ["AQC_PREFIX"],
)


@queue.on_startup
async def open_checker(state: dict[str, Any]) -> None:
    if CHECK_URL:
        state["checker"] = aioredis.Redis.from_url(CHECK_URL)


@queue.on_shutdown
async def close_checker(state: dict[str, Any]) -> None:
    r = state.pop("checker", None)
    if r is not None:
        await r.aclose()


async def record(kind: str) -> None:
    """Append one execution event for the current job to the checker list."""
    ctx = current_job()
    r = ctx.state.get("checker")
    if r is None:
        return
    event = {
        "j": ctx.job_id,
        "p": os.getpid(),
        "r": ctx.runner_id,
        "a": ctx.attempt,
        "t": ctx.lease_token,
        "n": ctx.task,
        "k": kind,
        "ts": time.time_ns() // 1000,
    }
    await r.rpush(CHECK_KEY, json.dumps(event, separators=(",", ":")))


@queue.task(name="work")
async def work(n: int, sleep_s: float = 0.05) -> int:
    await record("s")
    try:
        await asyncio.sleep(float(WORK_SLEEP) if WORK_SLEEP is not None else sleep_s)
    except BaseException:
        await record("x")
        raise
    await record("e")
    return n


@queue.task(name="fail_once")
async def fail_once(n: int, sleep_s: float = 0.05, delay: float = 0.1) -> int:
    """The first attempt asks for a retry after ``delay`` seconds; the next one succeeds."""
    await record("s")
    await asyncio.sleep(sleep_s)
    if current_job().attempt == 1:
        await record("x")
        raise Retry(delay=delay)
    await record("e")
    return n


@queue.task(name="poison")
async def poison() -> None:
    await record("s")
    os._exit(1)


@queue.task(name="blocker")
async def blocker(seconds: float) -> None:
    await record("s")
    time.sleep(seconds)  # blocks the event loop on purpose
    await record("e")


@queue.task(name="stubborn", timeout=float(os.environ.get("AQC_STUBBORN_TIMEOUT", "0.5")))
async def stubborn(seconds: float = 3.0) -> None:
    """Ignores every cancellation for ``seconds`` (its time limit is much shorter)."""
    await record("s")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue
    await record("e")


@queue.task(name="collect")
async def collect(results: list[int]) -> int:
    """A chord's callback: the sum of the group's results."""
    await record("s")
    await record("e")
    return sum(results)
