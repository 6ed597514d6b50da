"""The app that ``latency_stages.py`` runs in its runner process, instrumented.

Importing it wraps the store's and the broker's methods on the path of a job and in the
background (in this process only), and records the garbage collector's pauses. Every
event is ``(kind, wall start, wall end, job ids)``; the runner writes them as JSON to
``STAGES_OUT`` when it stops. Wall time (``time.time()``) is shared by the producer's
process and this one on one machine, so the two sides' events line up.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from aqueue import Queue, current_job
from aqueue._broker.broker import Broker
from aqueue._message import decode_message
from aqueue._store.store import Store

# Tuples of atomic values only: the collector stops tracking them, so a long run's
# events do not slow its full collections (lists would stay tracked).
Event = tuple[str, float, float, tuple[str, ...]]
EVENTS: list[Event] = []


def _ids_of_messages(raw: Iterable[Any]) -> list[str]:
    out = []
    for m in raw:
        with contextlib.suppress(Exception):  # a wake-up token: not a message
            out.append(decode_message(m if isinstance(m, bytes) else m.encode()).id)
    return out


def wrap(owner: type, name: str, ids: Callable[[tuple[Any, ...], Any], list[str]]) -> None:
    """Record each call of ``owner.name`` as an event named ``name``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.time()
        result = await original(*args, **kwargs)
        EVENTS.append((name, t0, time.time(), tuple(ids(args, result))))
        return result

    setattr(owner, name, timed)


def instrument() -> None:
    """Wrap what a job passes through and what runs beside it."""
    none: Callable[[tuple[Any, ...], Any], list[str]] = lambda a, r: []  # noqa: E731
    # the producer's side
    wrap(Store, "insert_jobs", lambda a, r: [j.id for j in a[1]])
    wrap(Broker, "dispatch", lambda a, r: _ids_of_messages(a[1]))
    # the runner's side
    wrap(Broker, "take", lambda a, r: _ids_of_messages(r))
    wrap(Broker, "wait_one", lambda a, r: _ids_of_messages([r] if r else []))
    wrap(Store, "claim_open", lambda a, r: [i for i, _, _ in a[1].items])
    wrap(Store, "claim", lambda a, r: [i for i, _, _ in a[1].items])
    # in the background of both
    for name in ("finish_release", "renew", "mark_dispatched", "undispatched"):
        wrap(Store, name, none)
    for name in ("expired_leases", "reclaim", "purge_finished"):
        wrap(Store, name, none)
    for name in ("settle", "heartbeat", "promote", "publish_stats"):
        wrap(Broker, name, none)
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.time())
        elif started:
            EVENTS.append((f"gc{info.get('generation', '?')}", started.pop(), time.time(), ()))

    gc.callbacks.append(on_gc)


instrument()

queue = Queue(
    "stages",
    redis_url=os.environ["STAGES_REDIS"],
    database_url=os.environ["STAGES_DATABASE"],
    table=os.environ["STAGES_TABLE"],
    key_prefix=os.environ["STAGES_PREFIX"],
)


@queue.task
async def lat() -> None:
    EVENTS.append(("start", time.time(), time.time(), (current_job().job_id,)))


@queue.on_startup
async def _ready(state: dict[str, Any]) -> None:
    with open(os.environ["STAGES_READY"], "w") as f:
        f.write("ready")


@queue.on_shutdown
async def _dump(state: dict[str, Any]) -> None:
    with open(os.environ["STAGES_OUT"], "w") as f:
        json.dump(EVENTS, f)
