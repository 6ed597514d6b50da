"""The runner's side tasks: lease heartbeat, reclaimer, sweeper, promoter.

Each is a loop over one runner's :class:`SideTasks` (what it reads and changes of the
runner, given explicitly), supervised by the runner (if one dies, the runner stops
loudly), and each ends on its own once the runner is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from .._backend import Backend
from .._decisions import paused_for, reclaim_hold, renewal_time_limit
from .._errors import BackendError
from .._store.marker import LONGEST as MARKS_LAND
from .claim import Claimer
from .config import RunnerConfig
from .core import RunnerCore, RunnerStats
from .every import every
from .finish import Recorder
from .recovery import SweepCursor, reclaim_pass, resync_all, sweep_pass

log = logging.getLogger("aqueue.runner")


@dataclasses.dataclass(frozen=True)
class SideTasks:
    """One runner's side tasks and everything they read and change of it: the core
    (the heartbeat writes the acknowledged renewal and the epoch into it; the others
    only read whether it is stopping), the runs being recorded or confirmed (which the
    heartbeat leaves alone) and the runner's recovery and clock measurement."""

    be: Backend
    config: RunnerConfig
    core: RunnerCore[asyncio.Task[None], asyncio.Task[None]]
    runner_id: str
    clock: Callable[[], int]
    stats: RunnerStats
    claimer: Claimer
    recorder: Recorder
    sweep_cursor: SweepCursor
    measure_clock: Callable[[], Awaitable[None]]
    startup_recovery: Callable[[], Awaitable[None]]
    startup_grace: float

    def stopping(self) -> bool:
        return self.core.stopping


async def heartbeat_loop(r: SideTasks) -> None:
    """Renew the leases of the running jobs in SQL (one statement, fenced by token),
    then the liveness key in Redis. The local deadline follows SQL acknowledgements
    only: the lease lives in SQL, so a frozen Redis does not make the runner give up."""
    be, cfg = r.be, r.config
    wait = cfg.heartbeat

    async def beat() -> float:
        nonlocal wait
        # A renewal that failed is tried again soon, not a whole period later: one
        # missed beat would otherwise leave a single try before the local deadline, and
        # a database back after a fraction of a second would still cost every lease.
        ok = await _beat(r, be, cfg)
        if ok and r.core.deadline_passed(time.monotonic()):
            # Acknowledged, and yet the deadline passed since: this process was paused
            # after the renewal (during the clock reading or the Redis part). As after a
            # pause during the sleep, a renewal sent now decides whether the handlers
            # go on; cancelling them without one depends on where the pause fell.
            log.warning("paused after a lease renewal: renewing again before anything else")
            return 0.0
        wait = (
            cfg.heartbeat if ok else min(cfg.heartbeat, 0.1 if wait >= cfg.heartbeat else wait * 2)
        )
        if cancel := r.core.revoke_all(time.monotonic()):
            log.error(
                "no lease renewal acknowledged within the lease: cancelling %d running "
                "job(s), they will run again elsewhere",
                len(cancel),
            )
            for task in cancel:
                task.cancel()
        return wait

    # Nothing is handled: _beat catches what a renewal may raise, and anything else (a
    # resync that failed) stops the runner loudly, as it always did.
    await every("heartbeat", cfg.heartbeat, beat, stopping=r.stopping)


async def _beat(r: SideTasks, be: Backend, cfg: RunnerConfig) -> bool:
    """One renewal; False when SQL did not acknowledge it. The renewal goes first and
    waits at most until shortly past the local deadline (``renewal_time_limit``): a
    runner back from a pause, or whose database stopped answering, then cancels its
    handlers on time instead of waiting on the database. The clock reading follows,
    with a time limit of its own (a failed one keeps the last offset)."""
    items = r.core.renewal_items()
    try:
        sent, lost = await _renew(r, be, cfg, items)
        r.core.acknowledged(sent, items, lost)
    except (BackendError, TimeoutError) as exc:
        log.warning("lease renewal in SQL failed: %r", exc)
        return False
    recording, confirming = r.recorder.recording, r.claimer.confirming
    # A run whose outcome is being recorded, or whose claim's commit failed and is being
    # taken again, is left alone: the core returns only the handlers to cancel. At once,
    # before the clock reading's await: a lost run waiting for a slot must not start.
    for job_id, task in r.core.on_lost(items, lost, recording=recording, confirming=confirming):
        log.warning("lease of job %s was revoked: cancelling its handler", job_id)
        task.cancel()
    with contextlib.suppress(BackendError, TimeoutError):
        async with asyncio.timeout(cfg.heartbeat / 2):
            await r.measure_clock()
    try:
        async with asyncio.timeout(cfg.heartbeat):
            await be.broker.heartbeat(r.runner_id, int(cfg.lease * 1000))
            stats = dataclasses.asdict(r.stats)
            await be.broker.publish_stats(r.runner_id, stats, int(cfg.lease * 1000))
            epoch = await be.broker.epoch()
    except (BackendError, TimeoutError) as exc:
        log.warning("Redis heartbeat failed: %r", exc)
        return True
    if r.core.epoch_changed(epoch):
        log.warning("Redis lost its data (epoch changed): resyncing from SQL")
        n = await resync_all(be, r.clock, cfg)
        log.warning("resync re-dispatched %d job(s)", n)
    return True


async def _renew(
    r: SideTasks, be: Backend, cfg: RunnerConfig, items: list[tuple[str, str]]
) -> tuple[float, set[str]]:
    """Renew ``items`` within ``renewal_time_limit``; returns when it was sent and the
    jobs SQL did not renew. A renewal whose time limit ran out by far more than the
    limit was waiting while this process was paused (its timer fired on resuming, before
    the reply could be read), not on a slow database: it is sent again once, with the
    time limit of a renewal sent on resuming."""
    for again in (False, True):
        sent = time.monotonic()
        limit = renewal_time_limit(
            until_deadline=r.core.until_deadline(sent), heartbeat=cfg.heartbeat, margin=cfg.margin
        )
        try:
            async with asyncio.timeout(limit):
                return sent, await be.store.renew(items, r.clock() + int(cfg.lease * 1e6))
        except TimeoutError:
            if again or time.monotonic() - sent - limit < cfg.heartbeat / 2:
                raise
            log.warning("lease renewal waited through a pause of this process: sending it again")
    raise AssertionError("unreachable")


async def _sleep_measured(seconds: float) -> float:
    """Sleep; return how long the process was paused meanwhile (see ``paused_for``)."""
    mono, wall = time.monotonic(), time.time()
    await asyncio.sleep(seconds)
    return paused_for(asked=seconds, slept=time.monotonic() - mono, wall_slept=time.time() - wall)


async def reclaim_loop(r: SideTasks) -> None:
    be, cfg = r.be, r.config
    paused = 0.0

    async def sleep(seconds: float) -> None:
        nonlocal paused
        paused = max(paused, await _sleep_measured(seconds))

    async def reclaim_once() -> float | None:
        nonlocal paused
        while hold := reclaim_hold(paused=paused, heartbeat=cfg.heartbeat):
            log.warning(
                "reclaimer: this runner was paused for %.1fs; waiting %.1fs so that live "
                "runners renew their leases before any is taken as expired",
                paused,
                hold,
            )
            paused = await _sleep_measured(hold)
        # A pause can also come during the pass: while it waits for the lock (then the
        # clock it reads next is already past the pause) or later on. The pass is
        # measured as a sleep of no time; one that took over half a heartbeat stops
        # before it reads the clock, and the next pass holds as after any pause.
        mono, wall = time.monotonic(), time.time()

        def took() -> float:
            return paused_for(
                asked=0.0, slept=time.monotonic() - mono, wall_slept=time.time() - wall
            )

        try:
            await reclaim_pass(
                be,
                r.clock,
                cfg,
                r.runner_id,
                in_time=lambda: not reclaim_hold(paused=took(), heartbeat=cfg.heartbeat),
            )
        finally:
            paused = took()
        if reclaim_hold(paused=paused, heartbeat=cfg.heartbeat):
            return 0.0  # hold at once
        paused = 0.0
        return None

    # The sleep between passes is measured: a pause of this process (SIGSTOP, a
    # suspended VM) is seen by the pass that follows it.
    await every(
        "reclaim pass",
        cfg.reclaim_period,
        reclaim_once,
        stopping=r.stopping,
        handled=(BackendError,),
        sleep=sleep,
    )


async def sweep_loop(r: SideTasks) -> None:
    be, cfg = r.be, r.config
    # Startup recovery looks again once the producers' dispatch marks have landed and
    # once the grace has passed: jobs enqueued just before Redis lost its data are not
    # yet marked (or not yet past the grace) at the first look, and would otherwise wait
    # a whole sweep period.
    start = time.monotonic()
    for at in sorted({MARKS_LAND + 0.5, r.startup_grace + 0.25}):
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        try:
            await r.startup_recovery()
        except BackendError as exc:
            log.warning("startup recovery check failed: %s", exc)

    async def sweep_once() -> None:
        n = await sweep_pass(
            be,
            r.clock,
            cfg,
            r.sweep_cursor,
            grace=cfg.sweep_grace,
            limit=cfg.sweep_limit,
        )
        if n:
            log.warning("sweeper re-dispatched %d job(s) missing from Redis", n)
        if cfg.keep_results is not None:
            before = r.clock() - int(cfg.keep_results * 1e6)
            gone = await be.store.purge_finished(be.queue_name, before)
            if gone:
                log.info("purged %d finished job(s) older than the keep time", gone)

    await every(
        "sweep pass",
        cfg.sweep_period,
        sweep_once,
        stopping=r.stopping,
        handled=(BackendError,),
    )


async def promote_loop(r: SideTasks) -> None:
    broker, cfg = r.be.broker, r.config

    async def promote_once() -> float:
        moved, next_ms = await broker.promote()
        if moved >= 1000:  # a backlog of due jobs: the next batch at once
            return 0.0
        wait = cfg.promote_interval if next_ms < 0 else min(cfg.promote_interval, next_ms / 1000)
        return max(wait, 0.001)

    await every(
        "promoting delayed jobs",
        cfg.promote_interval,
        promote_once,
        stopping=r.stopping,
        handled=(BackendError,),
        on_error=lambda _exc: 1.0,
        first=0,
    )
