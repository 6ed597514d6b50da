"""Resync Redis from SQL: push every job that should be dispatchable.

Used at startup (persistent-queue's reload of unfinished jobs) and when the Redis epoch
shows that Redis lost its data. Runs under a short Redis lock so a deploy of many runners
does it once. Duplicates it may create in Redis are harmless: the claim's compare-and-set
lets one run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._queue import _Backend

log = logging.getLogger("aqueue.resync")


async def resync(
    be: _Backend, clock: Callable[[], int], *, lock_ms: int, page: int = 1000, force: bool = False
) -> int:
    broker, store = be.broker, be.store
    lock_key = broker.keys.lock_sweep
    token = await broker.acquire_lock(lock_key, lock_ms)
    if token is None:
        return 0
    try:
        if not force:
            ready, delayed = await broker.lengths()
            if ready or delayed:
                return 0  # Redis holds this queue's dispatch state; the sweeper covers gaps
        after = ""
        total = 0
        while True:
            now = clock()
            rows = await store.dispatchable(be.queue_name, after, page, now)
            if not rows:
                return total
            ready_msgs = [r.message() for r in rows if r.run_at <= now]
            delayed_msgs = [(r.run_at // 1000, r.message()) for r in rows if r.run_at > now]
            await broker.dispatch(ready_msgs, delayed_msgs)
            total += len(rows)
            after = rows[-1].id
    finally:
        await broker.release_lock(lock_key, token)
