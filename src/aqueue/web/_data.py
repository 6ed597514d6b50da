"""What the pages read, gathered from the queue: the filter of a jobs list from its
query string, the runners (Redis: alive, in flight, counters, liveness left) and the
schedules (next tick, last run)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams

from .._errors import AqueueError, ConfigurationError
from .._models import JobRecord, JobStatus
from .._queue.client import QueueClient
from .._store.values import JobQuery

FILTER_FIELDS = ("status", "task", "job_id", "text", "from", "to")


@dataclass
class Filter:
    """A jobs list's filter as typed in its form (kept to fill the form again)."""

    values: dict[str, str] = field(default_factory=dict)
    before: str = ""

    @classmethod
    def of(cls, params: QueryParams | dict[str, str], **fixed: str) -> Filter:
        values = {k: str(params.get(k) or "").strip() for k in FILTER_FIELDS}
        values.update(fixed)
        return cls(values, str(params.get("before") or "").strip())

    def query(self, queue: QueueClient, *, paged: bool = True) -> JobQuery:
        """The checked :class:`JobQuery` (raises ``ConfigurationError`` when a field is
        wrong: an unknown status, a time that does not parse)."""
        v = self.values
        return queue.job_query(
            status=v["status"] or None,
            task=v["task"] or None,
            job_id=v["job_id"] or None,
            text=v["text"] or None,
            created_from=_moment(v["from"], "from"),
            created_to=_moment(v["to"], "to"),
            before_id=(self.before or None) if paged else None,
        )

    def params(self, **extra: str) -> dict[str, str]:
        """The filter's non-empty fields (for links and hidden form fields)."""
        out = {k: val for k, val in self.values.items() if val}
        out.update({k: val for k, val in extra.items() if val})
        return out


def _moment(text: str, what: str) -> datetime | None:
    """A time typed in the form (``YYYY-MM-DDTHH:MM[:SS]`` or with a space), read as UTC."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError as exc:
        raise ConfigurationError(f"{what}: {text!r} is not a time (YYYY-MM-DD HH:MM)") from exc
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RunnerView:
    id: str
    alive: bool
    in_flight: int | None
    stats: dict[str, int]
    beat_ago: float | None
    """Seconds since its last heartbeat (to the second; ``None``: unknown)."""
    expires_in: float | None
    """Seconds its liveness key has left (renewed at every heartbeat)."""


async def runners(queue: QueueClient) -> list[RunnerView]:
    be = await queue._backend()
    alive, stats = await asyncio.gather(be.broker.runners(), be.broker.runner_stats())
    ids = sorted(alive, key=lambda r: (not alive[r], r))
    flights = await asyncio.gather(*(be.broker.working_items(r) for r in ids))
    beats = await _liveness(be.broker, ids)
    return [
        RunnerView(r, alive[r], len(f), stats.get(r, {}), *beats.get(r, (None, None)))
        for r, f in zip(ids, flights, strict=True)
    ]


async def _liveness(broker: Any, ids: list[str]) -> dict[str, tuple[float | None, float | None]]:
    """Per runner: the idle time of its liveness key, i.e. the time since its last
    heartbeat wrote it (Redis keeps it to the second; EXISTS, PTTL and OBJECT do not
    touch it; an LFU eviction policy has none), and the time that key has left. The
    Redis broker only: the in-memory one has neither."""
    redis, keys = getattr(broker, "redis", None), getattr(broker, "keys", None)
    if redis is None or keys is None or not ids:
        return {}
    try:
        pipe = redis.pipeline(transaction=False)
        for r in ids:
            pipe.object("idletime", keys.alive(r))
            pipe.pttl(keys.alive(r))
        out = await pipe.execute(raise_on_error=False)
    except Exception:  # a page without these columns beats no page
        return {}
    found: dict[str, tuple[float | None, float | None]] = {}
    for i, r in enumerate(ids):
        idle, left = out[2 * i], out[2 * i + 1]
        found[r] = (
            float(idle) if isinstance(idle, int) else None,
            left / 1000 if isinstance(left, int) and left >= 0 else None,
        )
    return found


@dataclass(frozen=True)
class ScheduleView:
    task: str
    timing: str
    missed: str
    next_tick: int | None
    last_job: JobRecord | None


async def schedules(queue: QueueClient) -> list[ScheduleView]:
    now = queue._clock()
    out = []
    for name, s in sorted(queue.schedules.items()):
        try:
            nxt = next(s.ticks(now, now + 400 * 86400 * 1_000_000), None)
        except (ImportError, AqueueError):
            nxt = None
        last = await queue.find_jobs(queue.job_query(task=s.task), 1)
        timing = f"cron {s.cron}" if s.cron is not None else f"every {s.every:g} s"
        out.append(ScheduleView(name, timing, s.missed, nxt, last[0] if last else None))
    return out


STATUSES = [s.value for s in JobStatus]


@dataclass(frozen=True)
class Bucket:
    start: int
    done: int
    failed: int
    cancelled: int
    ok_h: float
    fail_h: float


@dataclass(frozen=True)
class Throughput:
    buckets: list[Bucket]
    finished: int
    failed: int
    peak: int

    @property
    def per_minute(self) -> float:
        return self.finished / max(1, len(self.buckets))

    @property
    def failure_rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0


MINUTE = 60_000_000
LOOKBACK = 60 * MINUTE
"""Jobs that finished in the window but were due more than this before it (a long
wait or a long run) are not counted: the bound lets SQL read only the recent rows."""


async def throughput(queue: QueueClient, minutes: int = 60) -> Throughput:
    """Jobs finished per minute over the last ``minutes`` (SQL ``finished_counts``, due
    within ``LOOKBACK`` before the window): the bars, scaled to the busiest minute."""
    be = await queue._backend()
    now = queue._clock()
    first = now - now % MINUTE - (minutes - 1) * MINUTE
    per: dict[int, dict[JobStatus, int]] = {}
    due_after = first - LOOKBACK
    for start, status, n in await be.store.finished_counts(queue.name, first, MINUTE, due_after):
        per.setdefault(start, {})[status] = n
    peak = max((sum(c.values()) for c in per.values()), default=0)
    scale = 95 / peak if peak else 0.0
    buckets = []
    for i in range(minutes):
        start = first + i * MINUTE
        c = per.get(start, {})
        done, bad, cancelled = (
            c.get(JobStatus.DONE, 0),
            c.get(JobStatus.FAILED, 0),
            c.get(JobStatus.CANCELLED, 0),
        )
        buckets.append(
            Bucket(
                start,
                done,
                bad,
                cancelled,
                round((done + cancelled) * scale, 2),
                round(bad * scale, 2),
            )
        )
    total = sum(sum(c.values()) for c in per.values())
    failed = sum(c.get(JobStatus.FAILED, 0) for c in per.values())
    return Throughput(buckets, total, failed, peak)
