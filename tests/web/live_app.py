"""The app the live tests serve with ``python -m aqueue web`` and run with ``python -m
aqueue run``: its queue takes its Redis and database URLs from AQUEUE_REDIS_URL and
AQUEUE_DATABASE_URL, its key prefix and table from AQUEUE_TEST_PREFIX."""

from __future__ import annotations

import os
from pathlib import Path

import aqueue

queue = aqueue.Queue(
    "live",
    key_prefix=os.environ.get("AQUEUE_TEST_PREFIX", "aqlive"),
    table=os.environ.get("AQUEUE_TEST_PREFIX", "aqlive").replace("-", "_"),
)


@queue.task(name="add", retries=0)
async def add(a: int, b: int) -> int:
    return a + b


@queue.task(name="flaky", retries=0)
async def flaky(flag: str) -> str:
    """Fails until the file ``flag`` exists: retried after it is made, it succeeds."""
    if not Path(flag).exists():
        raise RuntimeError(f"the flag file {flag} is not there yet")
    return "fixed"


@queue.task(name="boom", retries=0)
async def boom(note: str) -> None:
    raise ValueError(f"boom: {note}")


@queue.periodic(every=3600)
async def hourly_report() -> None:
    return None
