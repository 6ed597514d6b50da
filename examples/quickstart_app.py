"""A minimal aqueue app: one queue, two tasks, a startup hook and a timing middleware.

Run a runner for it from the repository root (``-c`` sets the concurrency, ``--burst``
makes it exit once no job is left)::

    python -m aqueue run examples.quickstart_app:queue

then, from another shell in the same directory, queue a few jobs and wait for their
results::

    python -m examples.quickstart_app

With neither ``AQUEUE_REDIS_URL`` nor ``AQUEUE_DATABASE_URL`` set, both processes share
the embedded default under ``./.aqueue/`` (a SQLite file and a local Redis on a unix
socket, started by whichever process needs it first). ``examples/starlette_app.py``
enqueues ``send_welcome`` from a web app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aqueue
from aqueue import JobContext

log = logging.getLogger("quickstart")

queue = aqueue.Queue("quickstart")


class Mailer:
    """Stands in for a real e-mail client (created once per runner, at startup)."""

    def __init__(self, sender: str) -> None:
        self.sender = sender
        self.sent = 0

    async def send(self, to: str, subject: str) -> str:
        await asyncio.sleep(0.01)  # the network round trip
        self.sent += 1
        return f"<{self.sent}@{self.sender}>"


@queue.on_startup
async def open_mailer(state: dict[str, Any]) -> None:
    """Runs once when a runner starts, before any job; ``state`` is shared with every
    job of that runner as ``aqueue.current_job().state``."""
    state["mailer"] = Mailer("example.com")
    log.info("mailer ready")


@queue.middleware
async def log_timing(ctx: JobContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
    """Wraps every handler call: log how long each attempt took and how it ended."""
    started = time.perf_counter()
    outcome = "failed"
    try:
        result = await call_next()
        outcome = "ok"
        return result
    finally:
        log.info(
            "%s %s (job %s, attempt %d/%d) in %.1f ms",
            ctx.task,
            outcome,
            ctx.job_id,
            ctx.attempt,
            ctx.max_attempts,
            (time.perf_counter() - started) * 1000,
        )


@queue.task(retries=5, timeout=30)
async def send_welcome(user_id: int) -> str:
    """Send the welcome e-mail of a new user; returns the message id."""
    mailer: Mailer = aqueue.current_job().state["mailer"]
    return await mailer.send(f"user-{user_id}@example.com", "Welcome!")


@queue.task
async def add(a: int, b: int) -> int:
    return a + b


async def main() -> None:
    """Queue a few jobs and print their results (a runner must be running)."""
    try:
        welcome = await send_welcome.enqueue(42)
        sums = [await add.enqueue(i, i * i) for i in range(3)]
        print(f"queued {welcome.id} and {len(sums)} add jobs; waiting for a runner...")
        print("send_welcome(42) ->", await welcome.result(timeout=30))
        for i, job in enumerate(sums):
            print(f"add({i}, {i * i}) ->", await job.result(timeout=30))
    finally:
        await queue.close()


if __name__ == "__main__":
    asyncio.run(main())
