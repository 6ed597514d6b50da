"""Cron and periodic tasks.

``@queue.cron("*/5 * * * *")`` or ``@queue.periodic(every=30)`` registers a task and its
schedule. Every runner runs a small scheduler; each tick is enqueued **once** however many
runners run, because its job id is derived from (queue, task, tick): the second insert of
the same id is a no-op in SQL (a permanent key per task and tick while the job row exists,
i.e. within ``keep_results``).

Missed ticks (the schedule existed and no runner was up): policy ``"latest"`` (default)
enqueues only the most recent tick missed within ``catch_up`` seconds; ``"all"`` enqueues
every missed tick in that window; ``"skip"`` enqueues none. A schedule seen for the first
time (by queue, task and timing, recorded in SQL) has missed nothing: it starts from now,
not with its whole catch-up window at its first deploy. Ticks are computed in UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from ._errors import ConfigurationError

MissedPolicy = Literal["latest", "all", "skip"]


@dataclass(frozen=True, slots=True)
class Schedule:
    task: str
    cron: str | None = None
    every: float | None = None
    missed: MissedPolicy = "latest"
    catch_up: float = 3600.0

    def key(self, queue: str) -> str:
        """The name its first-seen time is stored under: a change of timing (``cron`` or
        ``every``) makes a new schedule, whose ticks were never due before."""
        timing = self.cron if self.cron is not None else repr(self.every)
        h = hashlib.sha1(f"{queue}\0{self.task}\0{timing}".encode()).hexdigest()[:40]
        return f"schedule:{h}"

    def ticks(self, after_us: int, until_us: int) -> Iterator[int]:
        """Tick times (UNIX µs) in ``(after_us, until_us]``, ascending."""
        if self.every is not None:
            step = int(self.every * 1_000_000)
            t = (after_us // step + 1) * step
            while t <= until_us:
                yield t
                t += step
            return
        from cronsim import CronSim

        assert self.cron is not None
        start = datetime.fromtimestamp(after_us / 1_000_000, UTC)
        for dt in CronSim(self.cron, start):
            t = int(dt.timestamp() * 1_000_000)
            if t > until_us:
                return
            if t > after_us:
                yield t


def validate_cron(expr: str) -> None:
    try:
        from cronsim import CronSim, CronSimError
    except ImportError as exc:
        raise ConfigurationError(
            "cron schedules need the cronsim package: pip install 'aqueue[cron]'"
        ) from exc
    try:
        CronSim(expr, datetime.now(UTC))
    except CronSimError as exc:
        raise ConfigurationError(f"invalid cron expression {expr!r}: {exc}") from exc


def tick_job_id(queue: str, task: str, tick_us: int) -> str:
    """The job id of one tick: the same for every runner, so it is stored once."""
    h = hashlib.sha1(f"{queue}\0{task}\0{tick_us}".encode()).hexdigest()[:27]
    return f"cron-{h}"


def due(
    schedule: Schedule, last_us: int | None, now_us: int, first_seen_us: int | None = None
) -> list[int]:
    """Pure: the ticks to enqueue now, given the last time this scheduler looked and when
    the schedule was first seen (by any runner; None: before the catch-up window)."""
    if last_us is None:  # first look since start: apply the missed-tick policy
        if schedule.missed == "skip":
            return []
        # Only ticks of the schedule's lifetime were missed: none for a new schedule.
        start = now_us - int(schedule.catch_up * 1_000_000)
        if first_seen_us is not None:
            start = max(start, first_seen_us)
        window = list(schedule.ticks(start, now_us))
        return window[-1:] if schedule.missed == "latest" else window
    return list(schedule.ticks(last_us, now_us))
