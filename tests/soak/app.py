"""The soak's app (copied into the run's directory as ``app.py``; runners load
``app:queue``).

Settings come from the environment the driver sets: ``SOAK_QUEUE``, ``SOAK_REDIS_URL``,
``SOAK_DATABASE_URL``, ``SOAK_TABLE``, ``SOAK_PREFIX`` (the queue under test, on the
soak's own servers) and ``SOAK_LOG_DIR`` (where each process appends its executions).

The execution log is insert-only and kept outside everything the soak disturbs: one file
per process, opened ``O_APPEND``, one JSON line per event written with a single
``write()`` before the handler goes on, so a SIGKILL loses nothing written (the data is
in the kernel) and lines of one process never interleave. Events: ``{"k": kind, "j": job
id, "n": the producer's job number, "a": attempt, "t": lease token, "p": pid, "r": runner
id, "w": wall-clock us, "m": CLOCK_MONOTONIC us}`` with kind ``s`` (handler started),
``e`` (returned), ``f`` (raised its planned failure), ``c`` (cancelled), ``x`` (any other
exception).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from aqueue import Backoff, Queue, current_job

LOG_DIR = os.environ.get("SOAK_LOG_DIR", "")

queue = Queue(
    os.environ["SOAK_QUEUE"],
    redis_url=os.environ["SOAK_REDIS_URL"],
    database_url=os.environ["SOAK_DATABASE_URL"],
    table=os.environ["SOAK_TABLE"],
    key_prefix=os.environ["SOAK_PREFIX"],
)

_fd: int | None = None


def _log_fd() -> int:
    """This process's log file, opened on first use (after a fork it is the child's)."""
    global _fd
    if _fd is None:
        path = os.path.join(LOG_DIR, f"exec-{os.getpid()}.jsonl")
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _fd


def record(kind: str, n: int) -> None:
    """One event of the current execution; synchronous on purpose: nothing in the event
    loop can reorder or drop it."""
    if not LOG_DIR:
        return
    ctx = current_job()
    event = {
        "k": kind,
        "j": ctx.job_id,
        "n": n,
        "a": ctx.attempt,
        "t": ctx.lease_token,
        "p": os.getpid(),
        "r": ctx.runner_id,
        "w": time.time_ns() // 1000,
        "m": time.monotonic_ns() // 1000,
    }
    os.write(_log_fd(), (json.dumps(event, separators=(",", ":")) + "\n").encode())


class PlannedFailure(Exception):
    """The failure a job was enqueued to raise on its first attempts."""


# Short fixed retry delays: a retry is part of the soak's traffic, not a wait.
@queue.task(name="work", retries=6, backoff=Backoff.sequence(0.1, 0.3, 0.5))
async def work(n: int, sleep_s: float, fail_until: int) -> int:
    """Sleeps ``sleep_s``; attempts ``1..fail_until`` raise :class:`PlannedFailure`."""
    record("s", n)
    try:
        await asyncio.sleep(sleep_s)
    except asyncio.CancelledError:
        record("c", n)
        raise
    except BaseException:
        record("x", n)
        raise
    if current_job().attempt <= fail_until:
        record("f", n)
        raise PlannedFailure(f"job {n}: planned failure of attempt {current_job().attempt}")
    record("e", n)
    return n
