"""Routing: which Redis list or set a message goes to, decided in one place.

A message goes to the ready list of its priority level (``h`` > 0, ``n`` = 0, ``l`` < 0),
to a suspect lane when its job stalled before (``_decisions.suspect_lane``), or to the
delayed set (score: due time in ms) when it is not due yet. The decisions are pure
functions of the message's fields and ``now`` (``route_*``); a :class:`Dispatcher` then
sends a decided :class:`Routes` with one broker call and returns the epoch of the Redis
dataset that took it, which the caller's dispatch marks name (docs/explanation/reliability.md).

Follow-ups sent while settling deliveries (``settle.lua``: retries, give-backs) can reach
only the normal ready list and the delayed set; the promoter moves a due message from the
delayed set to the ready list of its priority, so other levels go that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ._broker.base import MessageBroker
from ._decisions import suspect_lane
from ._message import encode_message
from ._models import JobRecord, NewJob


@dataclass(slots=True)
class Routes:
    """Messages by destination: the three ready lists, the two suspect lanes and the
    delayed set (``(score ms, message)``)."""

    normal: list[str | bytes] = field(default_factory=list)
    high: list[str | bytes] = field(default_factory=list)
    low: list[str | bytes] = field(default_factory=list)
    delayed: list[tuple[int, str | bytes]] = field(default_factory=list)
    group: list[str | bytes] = field(default_factory=list)
    alone: list[str | bytes] = field(default_factory=list)

    def ready(self, priority: int, message: str | bytes) -> None:
        """Add a due message to the ready list of its priority level."""
        if priority == 0:
            self.normal.append(message)
        elif priority > 0:
            self.high.append(message)
        else:
            self.low.append(message)

    def __bool__(self) -> bool:
        return bool(
            self.normal or self.high or self.low or self.delayed or self.group or self.alone
        )


def row_message(r: JobRecord) -> str:
    """The message of a stored row, as it now stands (attempts and stalls fence copies)."""
    return encode_message(
        r.id, r.task, r.payload, r.attempts, r.max_attempts, r.priority, r.stalls, r.run_at
    )


def route_new(jobs: Sequence[NewJob], now: int) -> Routes:
    """Just stored jobs: due ones to their priority's ready list, the rest delayed."""
    out = Routes()
    normal, delayed = out.normal, out.delayed
    for j in jobs:
        if j.run_at > now:
            delayed.append((j.run_at // 1000, j.message()))
        elif j.priority == 0:
            normal.append(j.message())
        else:
            out.ready(j.priority, j.message())
    return out


def route_rows(rows: Iterable[JobRecord], now: int, max_stalls: int) -> Routes:
    """``todo`` rows sent from SQL (reclaim, sweep, resync, commit, repush): due ones to a
    suspect lane when they stalled before, else to their priority's ready list; the rest
    delayed (a stalled job's lane is decided again when it is sent from SQL once due)."""
    out = Routes()
    for r in rows:
        if r.run_at > now:
            out.delayed.append((r.run_at // 1000, row_message(r)))
            continue
        lane = suspect_lane(r.stalls, max_stalls)
        if lane is None:
            out.ready(r.priority, row_message(r))
        elif lane == "group":
            out.group.append(row_message(r))
        else:
            out.alone.append(row_message(r))
    return out


def route_follow_up(routes: Routes, message: bytes, priority: int, run_at: int, now: int) -> None:
    """A retry's message (``run_at`` in µs): due at the normal level, to the consuming end
    of the normal ready list (``settle.lua``); otherwise through the delayed set, due at
    ``run_at`` (the promoter puts it on the ready list of its priority)."""
    if run_at <= now and priority == 0:
        routes.normal.append(message)
    else:
        routes.delayed.append((run_at // 1000, message))


def route_give_back(routes: Routes, message: bytes, now: int) -> None:
    """A delivery sent again unrun (a claim given back or of unknown outcome): through
    the delayed set, due ``now``, so the promoter puts it at the far end of the ready
    list of its priority, behind the jobs already waiting."""
    routes.delayed.append((now // 1000, message))


def route_later(routes: Routes, message: bytes, until: int) -> None:
    """A delivery that may not run before ``until`` (µs; a lost claim of a job not due
    yet or leased elsewhere): delayed to the millisecond after it."""
    routes.delayed.append((until // 1000 + 1, message))


class Dispatcher:
    """Sends decided routes to Redis: one broker call per kind of destination."""

    __slots__ = ("broker",)

    def __init__(self, broker: MessageBroker) -> None:
        self.broker = broker

    async def send(self, routes: Routes) -> str | None:
        """Push ``routes`` (ready lists and delayed set in one round trip, suspect lanes in
        another). Returns the epoch the first push reported (None: nothing to send): if
        Redis lost its data between the two, the marks name the older dataset and the
        sweeper sends the later push's messages again (a second copy, never a lost one)."""
        epoch: str | None = None
        if routes.normal or routes.high or routes.low or routes.delayed:
            epoch = await self.broker.dispatch(
                routes.normal, routes.delayed, high=routes.high, low=routes.low
            )
        if routes.group or routes.alone:
            suspects = await self.broker.dispatch_suspects(routes.group, routes.alone)
            epoch = epoch or suspects
        return epoch

    async def new_jobs(self, jobs: Sequence[NewJob], now: int) -> str | None:
        """Send just stored jobs (``route_new``)."""
        return await self.send(route_new(jobs, now))

    async def rows(self, rows: Sequence[JobRecord], now: int, *, max_stalls: int = 3) -> str | None:
        """Send ``todo`` rows (``route_rows``)."""
        if not rows:
            return None
        return await self.send(route_rows(rows, now, max_stalls))

    async def settle(
        self,
        runner_id: str,
        remove: Sequence[bytes],
        routes: Routes | None = None,
        finished: Sequence[str] = (),
    ) -> int:
        """Remove deliveries from the runner's working list, send follow-ups decided by
        ``route_follow_up`` / ``route_give_back`` / ``route_later`` and tell result
        waiters which jobs ``finished``: one round trip (``settle.lua``)."""
        if routes is None:
            return await self.broker.settle(runner_id, remove, finished=finished)
        if routes.high or routes.low or routes.group or routes.alone:
            raise ValueError("settle sends to the normal ready list and the delayed set only")
        return await self.broker.settle(
            runner_id, remove, ready=routes.normal, delayed=routes.delayed, finished=finished
        )
