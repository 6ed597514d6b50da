"""The runner's scheduler of cron and periodic tasks (see ``aqueue._cron`` for the
schedules, their ticks and the missed-tick policy)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._cron import due, tick_job_id
from .._models import Options
from .._registry import Registry
from .every import every

log = logging.getLogger("aqueue.cron")


async def run_scheduler(
    queue: Registry, clock: Callable[[], int], stopping: Callable[[], bool]
) -> None:
    """Enqueue each due tick of the queue's schedules, once however many runners run."""
    last: dict[str, int | None] = dict.fromkeys(queue.schedules)
    seen: dict[str, int] = {}

    async def tick_once() -> float:
        now = clock()
        for name, sched in queue.schedules.items():
            if name not in seen:
                try:
                    be = await queue._backend()
                    seen[name] = await be.store.first_seen(sched.key(queue.name), now)
                except Exception as exc:
                    # Without it, a new schedule would take its whole window as missed.
                    log.warning("could not read schedule %s's state (%s); trying again", name, exc)
                    continue
            for tick in due(sched, last[name], now, seen[name]):
                job_id = tick_job_id(queue.name, name, tick)
                try:
                    await queue._enqueue(name, (), {}, Options(job_id=job_id))
                except Exception as exc:
                    log.warning("could not enqueue %s tick %d: %s", name, tick, exc)
                    break
                last[name] = tick
            else:
                last[name] = now
        return min(1.0, _until_next(queue, now))

    await every("cron scheduler", 1.0, tick_once, stopping=stopping, first=0)


def _until_next(queue: Registry, now: int) -> float:
    best = 1.0
    for sched in queue.schedules.values():
        for t in sched.ticks(now, now + 1_000_000):
            best = min(best, max(0.001, (t - now) / 1_000_000))
            break
    return best
