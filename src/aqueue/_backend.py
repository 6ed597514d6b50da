"""The backend of one queue in one event loop: the SQL store, the Redis broker and the
helpers around them, shared by the producer side (``_queue``) and the runner
(``_runner``), which both sit above this module. Also the routing of stored rows to
Redis (``dispatch_records``), which both sides use."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ._broker.broker import Broker
from ._broker.notify import FinishListener
from ._decisions import suspect_lane
from ._models import JobRecord, NewJob, encode_message, level_of
from ._store.batcher import Batcher
from ._store.marker import DispatchMarker
from ._store.store import Store


@dataclass(slots=True)
class Backend:
    loop: asyncio.AbstractEventLoop
    queue_name: str
    store: Store
    broker: Broker
    inserter: Batcher[NewJob, str]
    marker: DispatchMarker
    listener: FinishListener


def _message(r: JobRecord) -> str:
    return encode_message(r.id, r.task, r.payload, r.attempts, r.max_attempts, r.priority, r.stalls)


async def dispatch_records(
    be: Backend, rows: list[JobRecord], now: int, *, max_stalls: int = 3
) -> str | None:
    """Push ``todo`` rows to Redis: due ones to their priority's ready list, or to the
    suspect lanes when they stalled before (see ``suspect_lane``); the rest to the
    delayed set. Returns the epoch the first push reported (None: no rows): if Redis
    lost its data between the pushes, the marks name the older dataset, and the sweeper
    sends the later push's messages again (a second copy, never a lost one)."""
    if not rows:
        return None
    levels: dict[str, list[str]] = {"h": [], "n": [], "l": []}
    lanes: dict[str, list[str]] = {"group": [], "alone": []}
    for r in rows:
        if r.run_at > now:
            continue
        lane = suspect_lane(r.stalls, max_stalls)
        if lane is None:
            levels[level_of(r.priority)].append(_message(r))
        else:
            lanes[lane].append(_message(r))
    delayed = [(r.run_at // 1000, _message(r)) for r in rows if r.run_at > now]
    epoch: str | None = None
    if levels["n"] or levels["h"] or levels["l"] or delayed:
        epoch = await be.broker.dispatch(levels["n"], delayed, high=levels["h"], low=levels["l"])
    if lanes["group"] or lanes["alone"]:
        suspects = await be.broker.dispatch_suspects(lanes["group"], lanes["alone"])
        epoch = epoch or suspects
    return epoch
