"""Supervised periodic upkeep: one helper for the runner's side loops.

``every`` runs ``fn`` until the runner stops: it sleeps ``period`` (or the delay ``fn``
returned last time, for loops with their own timing rules: a failed heartbeat retried
after 0.1 s doubling, a promoter draining a backlog at once), runs ``fn`` and logs what
it raised. ``CancelledError`` is never caught; exceptions outside ``handled`` propagate
so the runner's supervision stops it loudly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("aqueue.runner")


class Upkeep:
    """Counters of one periodic task (for tests and stats)."""

    __slots__ = ("failures", "name", "runs")

    def __init__(self, name: str) -> None:
        self.name = name
        self.runs = 0
        self.failures = 0


async def every(
    name: str,
    period: float,
    fn: Callable[[], Awaitable[float | None]],
    *,
    stopping: Callable[[], bool],
    handled: tuple[type[Exception], ...] = (),
    on_error: Callable[[Exception], float | None] | None = None,
    first: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    upkeep: Upkeep | None = None,
) -> Upkeep:
    """Run ``fn`` every ``period`` seconds until ``stopping()``.

    ``fn`` may return the next delay (None: ``period``). An exception listed in
    ``handled`` is logged as a warning and counted; ``on_error`` may then pick the next
    delay. Others, and ``CancelledError``, propagate. ``first`` is the delay before the
    first run (default ``period``; 0 runs at once).
    """
    up = upkeep if upkeep is not None else Upkeep(name)
    wait = period if first is None else first
    while not stopping():
        if wait > 0:
            await sleep(wait)
        elif wait == 0 and up.runs:
            await sleep(0)  # a loop that asks to run again at once still yields
        try:
            nxt = await fn()
        except handled as exc:
            up.failures += 1
            log.warning("%s failed: %s", name, exc)
            nxt = on_error(exc) if on_error is not None else None
        up.runs += 1
        wait = period if nxt is None else max(0.0, nxt)
    return up
