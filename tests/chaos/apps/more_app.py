"""App of ``test_chaos_more.py`` (copied into a temp dir as ``app.py``).

Same environment and execution events as ``chaos_app.py`` (``AQC_*``; events ``s``/``e``/
``x`` on the checker list), plus:

- ``AQM_DATABASE_URL``: when set, the runner's SQL URL (e.g. a proxy the test controls)
  instead of ``AQC_DATABASE_URL``;
- ``AQM_LOCK_WAIT``: the queue's ``sql_lock_wait_timeout`` (seconds, default 5);
- ``AQM_TIMEOUT``: the time limit of ``hang`` and ``stubborn`` (default 1 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from aqueue import Backoff, Queue, current_job

CHECK_URL = os.environ.get("AQC_CHECK_URL", "")
CHECK_KEY = os.environ.get("AQC_CHECK_KEY", "")
TIMEOUT = float(os.environ.get("AQM_TIMEOUT", "1"))

queue = Queue(
    os.environ["AQC_QUEUE"],
    redis_url=os.environ["AQC_REDIS_URL"],
    database_url=os.environ.get("AQM_DATABASE_URL") or os.environ["AQC_DATABASE_URL"],
    table=os.environ["AQC_TABLE"],
    key_prefix=os.environ["AQC_PREFIX"],
    sql_lock_wait_timeout=int(os.environ.get("AQM_LOCK_WAIT", "5")),
)


@queue.on_startup
async def open_checker(state: dict[str, Any]) -> None:
    if CHECK_URL:
        state["checker"] = aioredis.Redis.from_url(CHECK_URL)
        state["checker_sync"] = redis.Redis.from_url(CHECK_URL, socket_timeout=5)


@queue.on_shutdown
async def close_checker(state: dict[str, Any]) -> None:
    r = state.pop("checker", None)
    if r is not None:
        await r.aclose()
    s = state.pop("checker_sync", None)
    if s is not None:
        s.close()


def _event(kind: str) -> str:
    ctx = current_job()
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
    return json.dumps(event, separators=(",", ":"))


async def record(kind: str) -> None:
    """Append one execution event for the current job to the checker list."""
    r = current_job().state.get("checker")
    if r is not None:
        await r.rpush(CHECK_KEY, _event(kind))


def record_now(kind: str) -> None:
    """The same, without yielding to the event loop (a blocking call)."""
    r = current_job().state.get("checker_sync")
    if r is not None:
        r.rpush(CHECK_KEY, _event(kind))


@queue.task(name="work")
async def work(n: int, sleep_s: float = 0.05) -> int:
    await record("s")
    try:
        await asyncio.sleep(sleep_s)
    except BaseException:
        await record("x")
        raise
    await record("e")
    return n


@queue.task(name="poison")
async def poison() -> None:
    """Kills its runner process every time it runs."""
    await record("s")
    os._exit(1)


@queue.task(name="block_once")
async def block_once(seconds: float) -> int:
    """Blocks the event loop for ``seconds`` the first time this job runs anywhere (a
    flag on the checker Redis), runs at once after that. Returns the runner's pid."""
    ctx = current_job()
    await record("s")
    sync = ctx.state.get("checker_sync")
    first = sync is None or sync.set(f"{CHECK_KEY}:blocked:{ctx.job_id}", b"1", nx=True, ex=300)
    if first:
        time.sleep(seconds)  # blocks the event loop on purpose
    record_now("e")  # no await between the wake-up and the return
    return os.getpid()


_retry_fast = Backoff(base=0.1, factor=1.0, jitter=0.0)


@queue.task(name="hang", timeout=TIMEOUT, retries=1, backoff=_retry_fast)
async def hang() -> None:
    """Never returns (but honours its cancellation)."""
    await record("s")
    try:
        await asyncio.sleep(3600)
    except BaseException:
        await record("x")
        raise


@queue.task(name="stubborn", timeout=TIMEOUT, retries=1, backoff=_retry_fast)
async def stubborn() -> None:
    """Never returns and swallows every cancellation."""
    record_now("s")
    while True:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            continue
