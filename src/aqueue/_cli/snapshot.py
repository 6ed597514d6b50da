"""What the monitoring commands read: the queue's counts and Redis lengths, its runners
(alive, in flight, counters, last heartbeat) and its schedules (next tick, last run).

A runner's last heartbeat is read from Redis as the idle time of its liveness key,
which only the runner's heartbeat writes (``EXISTS``, which the readers use, does not
touch it): no clock of the runner is involved. Redis keeps that idle time to the second,
and not at all under an LFU eviction policy: then it is unknown (``None``).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._app import Queue
from .._backend import Backend
from .._broker.broker import Broker
from .._cron import Schedule, tick_job_id
from .._errors import BackendError
from .._models import JobStatus
from .render import iso


@dataclass
class RunnerRow:
    id: str
    alive: bool
    in_flight: int | None
    executed: int | None
    done: int | None
    failed: int | None
    retried: int | None
    heartbeat_age: float | None
    """Seconds since its last heartbeat (to the second; None: unknown)."""


async def _heartbeat_ages(be: Backend, ids: list[str]) -> dict[str, float | None]:
    broker = be.broker
    if not ids or not isinstance(broker, Broker):
        return dict.fromkeys(ids)
    try:
        pipe = broker.redis.pipeline(transaction=False)
        for r in ids:
            pipe.object("idletime", broker.keys.alive(r))
        ages = await pipe.execute(raise_on_error=False)
    except Exception:  # an LFU policy refuses OBJECT IDLETIME: the age is unknown
        return dict.fromkeys(ids)
    return {r: float(a) if isinstance(a, int) else None for r, a in zip(ids, ages, strict=True)}


async def runner_rows(q: Queue) -> list[RunnerRow]:
    """The runners Redis knows for this queue, alive ones first."""
    be = await q._backend()
    alive = await be.broker.runners()
    stats = await be.broker.runner_stats()
    ids = sorted(alive, key=lambda r: (not alive[r], r))
    ages = await _heartbeat_ages(be, [r for r in ids if alive[r]])
    rows = []
    for r in ids:
        s = stats.get(r, {})
        in_flight = len(await be.broker.working_items(r)) if alive[r] else None
        rows.append(
            RunnerRow(
                r,
                alive[r],
                in_flight,
                s.get("executed"),
                s.get("done"),
                s.get("failed"),
                s.get("retried"),
                ages.get(r),
            )
        )
    return rows


def runner_doc(row: RunnerRow) -> dict[str, Any]:
    return asdict(row)


@dataclass
class QueueView:
    """One frame of ``top``."""

    queue: str
    counts: dict[str, int]
    redis_ready: int | None
    redis_delayed: int | None
    backlog_age: float | None
    runners: list[RunnerRow] = field(default_factory=list)

    def doc(self) -> dict[str, Any]:
        d = asdict(self)
        d["runners"] = [runner_doc(r) for r in self.runners]
        return d


async def queue_view(q: Queue) -> QueueView:
    be = await q._backend()
    counts = {s.value: n for s, n in (await q.counts()).items()}
    for s in JobStatus:
        counts.setdefault(s.value, 0)
    ready = delayed = None
    with contextlib.suppress(BackendError):
        ready, delayed = await be.broker.lengths()
    runners: list[RunnerRow] = []
    with contextlib.suppress(BackendError):
        runners = await runner_rows(q)
    return QueueView(q.name, counts, ready, delayed, await q.backlog_age(), runners)


# -- schedules --------------------------------------------------------------------------


def next_tick(s: Schedule, now_us: int) -> int | None:
    return next(iter(s.ticks(now_us, now_us + 400 * 86400 * 1_000_000)), None)


def previous_ticks(s: Schedule, now_us: int, n: int) -> list[int]:
    """The ``n`` latest ticks at or before ``now_us``, newest first."""
    if s.every is not None:
        step = int(s.every * 1_000_000)
        last = now_us // step * step
        return [last - i * step for i in range(n)]
    from cronsim import CronSim

    assert s.cron is not None
    start = datetime.fromtimestamp(now_us / 1_000_000, UTC)
    out = []
    for dt in CronSim(s.cron, start, reverse=True):
        out.append(int(dt.timestamp() * 1_000_000))
        if len(out) == n:
            break
    return out


LOOK_BACK = 10
"""Ticks looked at for a schedule's last run (each one a lookup by primary key)."""


async def schedule_docs(q: Queue, now_us: int) -> list[dict[str, Any]]:
    """Each schedule with its next tick and its last run: the newest of its last
    ``LOOK_BACK`` ticks whose job exists (ticks missed while no runner was up, or whose
    jobs were purged, have none)."""
    be = await q._backend()
    docs = []
    for name, s in sorted(q.schedules.items()):
        last = None
        for tick in previous_ticks(s, now_us, LOOK_BACK):
            rec = await be.store.get_job(tick_job_id(q.name, name, tick))
            if rec is not None:
                last = {
                    "tick": iso(tick),
                    "job_id": rec.id,
                    "status": rec.status.value,
                    "finished_at": iso(rec.finished_at),
                }
                break
        docs.append(
            {
                "task": name,
                "kind": "cron" if s.cron is not None else "periodic",
                "schedule": s.cron if s.cron is not None else f"every {s.every:g}s",
                "missed": s.missed,
                "next_tick": iso(next_tick(s, now_us)),
                "last_run": last,
            }
        )
    return docs
