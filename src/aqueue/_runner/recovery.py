"""Recovery passes: the reclaimer, the SQL -> Redis sweeper, startup recovery and
the resync after Redis lost its data. Each runs under a short Redis lock so that many
runners do it once; each decides in SQL first (compare-and-set) and only then moves
messages in Redis. Duplicates these may create in Redis are harmless: one claim wins."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from .. import _observe
from .._backend import Backend
from .._decisions import decide_reclaim
from .._errors import BackendError
from .._models import JobStatus
from .._serde import encode_reason
from .._store.values import Reclaim
from .config import RunnerConfig

log = logging.getLogger("aqueue.recovery")


@dataclass
class SweepCursor:
    after: str = ""


async def reclaim_pass(
    be: Backend,
    clock: Callable[[], int],
    cfg: RunnerConfig,
    me: str,
    *,
    in_time: Callable[[], bool] = lambda: True,
) -> int:
    """Jobs ``running`` under a lease that expired: decided in SQL (destination, stall
    limit), then the ones to run again go to a suspect lane. Returns jobs reclaimed.

    ``in_time`` is asked once the lock is held, just before the clock is read: False
    (this process was paused while it waited for the lock) ends the pass with nothing
    taken, since the other runners may have been paused too and not renewed yet."""
    broker, store = be.broker, be.store
    token = await broker.acquire_lock(broker.keys.lock_reclaim, int(cfg.lease * 1000))
    if token is None:
        return 0
    try:
        if not in_time():
            return 0
        now = clock()
        rows = await store.expired_leases(be.queue_name, now, cfg.reclaim_limit)
        decisions = []
        for r in rows:
            verdict = decide_reclaim(
                stalls=r.stalls,
                max_stalls=cfg.max_stalls,
                destination=cfg.zombie_destination,
                owner=r.lease_owner,
            )
            err = encode_reason("RunnerDied", verdict.reason) if verdict.reason else None
            decisions.append(Reclaim(r.id, r.lease_token or "", verdict.status, err))
        changed = await store.reclaim(decisions, now, now) if decisions else set()
        # As SQL now stands (stall counted, attempt given back): always a suspect lane.
        revived = [
            replace(r, attempts=max(r.attempts - 1, 0), stalls=r.stalls + 1, run_at=now)
            for r, d in zip(rows, decisions, strict=True)
            if r.id in changed and d.status is JobStatus.TODO
        ]
        epoch = await be.dispatcher.rows(revived, now, max_stalls=cfg.max_stalls)
        if epoch is not None:
            be.marker.add((r.id for r in revived), now, epoch)
        observer = _observe.active
        for r, d in zip(rows, decisions, strict=True):
            if r.id in changed:
                log.warning(
                    "reclaimed job %s from %s -> %s",
                    r.id,
                    r.lease_owner,
                    d.status.value,
                    extra={"job_id": r.id, "task": r.task, "queue": r.queue, "runner": me},
                )
                if observer is not None:
                    observer.reclaimed(r.queue, r.task)
        await _forget_dead_runners(be, me)
        return len(changed)
    finally:
        await broker.release_lock(broker.keys.lock_reclaim, token)


async def _forget_dead_runners(be: Backend, me: str) -> None:
    """A runner whose liveness key is gone and that holds no running job in SQL has
    nothing left to reclaim: return what sits in its working list and forget it."""
    for rid, alive in (await be.broker.runners()).items():
        if alive or rid == me:
            continue
        if await be.store.owner_running(be.queue_name, rid) == 0:
            moved = await be.broker.requeue_all(rid)
            await be.broker.forget_runner(rid)
            if moved:
                log.warning("returned %d message(s) of dead runner %s to ready", moved, rid)


async def sweep_pass(
    be: Backend,
    clock: Callable[[], int],
    cfg: RunnerConfig,
    cursor: SweepCursor,
    *,
    grace: float,
    limit: int,
    created_after: int = 0,
    lock: bool = True,
) -> int:
    """Re-dispatch ``todo`` rows that this Redis may not hold (never marked dispatched
    after ``grace`` seconds, or dispatched under another epoch), then mark them. Pages by
    primary key from ``cursor`` so a deep backlog is not re-read every pass."""
    broker, store = be.broker, be.store
    token = None
    if lock:
        token = await broker.acquire_lock(broker.keys.lock_sweep, int(cfg.lease * 1000))
        if token is None:
            return 0
    try:
        epoch = await broker.epoch()
        total = 0
        while total < limit:
            now = clock()
            rows = await store.undispatched(
                be.queue_name,
                epoch,
                now - int(grace * 1e6),
                cursor.after,
                min(1000, limit - total),
            )
            rows = [r for r in rows if r.created_at >= created_after]
            if not rows:
                cursor.after = ""
                break
            pushed = await be.dispatcher.rows(rows, now, max_stalls=cfg.max_stalls)
            await store.mark_dispatched([(r.id, r.updated_at) for r in rows], pushed or epoch, now)
            total += len(rows)
            cursor.after = rows[-1].id
        return total
    finally:
        if token is not None:
            await broker.release_lock(broker.keys.lock_sweep, token)


async def resync_all(be: Backend, clock: Callable[[], int], cfg: RunnerConfig) -> int:
    """After Redis lost its data: every ``todo`` row goes back to Redis at once."""
    broker, store = be.broker, be.store
    token = await broker.acquire_lock(broker.keys.lock_sweep, int(cfg.lease * 1000))
    if token is None:
        return 0
    try:
        epoch = await broker.epoch()
        after, total = "", 0
        while True:
            now = clock()
            page = await store.dispatchable(be.queue_name, after, 1000, now)
            if not page:
                return total
            after = page[-1].id
            rows = [r for r in page if r.status is JobStatus.TODO]
            pushed = await be.dispatcher.rows(rows, now, max_stalls=cfg.max_stalls)
            await store.mark_dispatched([(r.id, r.updated_at) for r in rows], pushed or epoch, now)
            total += len(rows)
    except BackendError as exc:
        log.warning("resync interrupted (%s); the sweeper will finish it", exc)
        return 0
    finally:
        await broker.release_lock(broker.keys.lock_sweep, token)
