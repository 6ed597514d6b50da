"""The runner: one event loop running consumers and supervised side tasks.

Flow of one job: the fetcher moves messages ``ready -> working:<runner>`` (a Lua batch
when the backlog is deep, a blocking ``BLMOVE`` when idle), the claimer claims them by
compare-and-set in SQL (one statement per batch, one fresh lease token), the handler runs,
the finisher records the outcome by compare-and-set on the token (one statement per
batch) and then removes the messages from the working list (one Lua call per batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import TYPE_CHECKING, Any

from .._errors import (
    BackendError,
    RunnerCrashedError,
)
from .._ids import now_us
from . import gctune
from . import side as side_tasks
from .claim import Claimer
from .config import RunnerConfig
from .execute import ABANDON_AFTER, abandoned_jobs
from .fetching import Fetcher
from .finish import Recorder
from .recovery import SweepCursor, sweep_pass
from .scheduler import run_scheduler
from .watchdog import Watchdog

if TYPE_CHECKING:
    from .._backend import Backend

log = logging.getLogger("aqueue.runner")


_CLOCK_ROUND_TRIP_US = 50_000
"""A clock reading whose round trip took longer than this is not trusted."""


class Runner(Fetcher):
    """A runner for one queue: connects, recovers, runs the fetcher and the side tasks
    until stopped, then shuts down (``run``)."""

    # -- public ------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, recover, run jobs until stopped (a signal, or idle in
        burst mode), then shut down gracefully."""
        be = await self._connect()
        cfg = self.config
        await self._check_redis()
        core = self.core
        core.epoch = await be.broker.epoch()
        # SQLite runs one write at a time: a second statement in flight would only queue
        # behind the first, with fewer rows than if it had waited.
        lanes = 1 if be.store.single_writer else 2
        recorder = self._recorder = Recorder(
            be,
            core,
            runner_id=self.id,
            clock=self.clock,
            stats=self.stats,
            batch=cfg.batch,
            lanes=lanes,
            linger=cfg.finish_linger,
        )
        claimer = self._claimer = Claimer(
            be,
            core,
            runner_id=self.id,
            lease=cfg.lease,
            clock=self.clock,
            stats=self.stats,
            batch=cfg.batch,
            lanes=lanes,
        )
        await be.broker.heartbeat(self.id, int(cfg.lease * 1000))
        core.acknowledged(time.monotonic())
        for hook in self.queue.startup_hooks:
            await hook(self.state)
        loop = asyncio.get_running_loop()
        saved: dict[int, Any] = {}
        if cfg.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    saved[sig] = signal.getsignal(sig)
                    loop.add_signal_handler(sig, self._on_signal)
        await self._startup_recovery()
        up = side_tasks.SideTasks(
            be,
            cfg,
            core,
            self.id,
            self.clock,
            self.stats,
            claimer,
            recorder,
            self._sweep_cursor,
            self._measure_clock,
            self._startup_recovery,
            self.startup_grace,
        )
        exporter = None
        if cfg.metrics_port is not None:
            from ..metrics import serve_runner_metrics  # prometheus_client only when asked

            exporter = serve_runner_metrics(be, cfg.metrics_port, cfg.metrics_host)
        side = {
            loop.create_task(self._fetch_loop(), name="aqueue-fetcher"),
            loop.create_task(side_tasks.heartbeat_loop(up), name="aqueue-heartbeat"),
            loop.create_task(side_tasks.promote_loop(up), name="aqueue-promoter"),
            loop.create_task(side_tasks.reclaim_loop(up), name="aqueue-reclaimer"),
            loop.create_task(side_tasks.sweep_loop(up), name="aqueue-sweeper"),
        }
        if self.queue.schedules:
            side.add(
                loop.create_task(
                    run_scheduler(self.queue, self.clock, lambda: core.stopping),
                    name="aqueue-scheduler",
                )
            )
        watchdog = Watchdog(loop, cfg.watchdog) if cfg.watchdog else None
        tuned = gctune.tune(cfg.gc_threshold)
        # Said once the synchronous part of the start (the collection before the freeze,
        # which can take a while on a loaded machine) is over: from here the side tasks
        # run at the next await, so a pause after this line is one they measure.
        log.info(
            "runner %s started: queue %r, %d task(s), concurrency %d%s",
            self.id,
            self.queue.name,
            len(self.queue.tasks),
            cfg.concurrency,
            ", burst" if cfg.burst else "",
        )
        self.started.set()
        crashed: BaseException | None = None
        stop_wait = loop.create_task(self._stop.wait(), name="aqueue-stop-wait")
        try:
            done, _ = await asyncio.wait({*side, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stop_wait and not t.cancelled() and t.exception() is not None:
                    crashed = t.exception()
                    log.critical("runner side task %s died: %r; stopping", t.get_name(), crashed)
        finally:
            stop_wait.cancel()
            if watchdog is not None:
                watchdog.stop()
            try:
                await self._shutdown(side)
            finally:
                if tuned:
                    gctune.restore()
                if exporter is not None:
                    # its HTTP server takes up to half a second to stop: not on the loop
                    await asyncio.to_thread(exporter.close)
            for signum, previous in saved.items():
                # put back what was there (e.g. asyncio.run's own SIGINT handler)
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signum)
                    if previous is not None:
                        signal.signal(signum, previous)
        if crashed is not None:
            raise RunnerCrashedError(f"runner side task died: {crashed!r}") from crashed

    # -- start & stop ------------------------------------------------------------------

    async def _connect(self) -> Backend:
        """The backend, and the clock offset to SQL. A database or Redis that is down at
        startup (a deploy racing a restart) is tried again for ``startup_wait`` seconds
        instead of failing the runner, which a supervisor would restart into the same
        outage; configuration errors fail at once."""
        deadline = time.monotonic() + self.config.startup_wait
        delay = 0.25
        while True:
            try:
                be = self._be = await self.queue._backend()
                await self._measure_clock()
                return be
            except BackendError as exc:
                self._be = None
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    raise
                log.warning("cannot reach the backend at startup (%s); trying again", exc)
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)

    async def _measure_clock(self) -> None:
        """Offset of the SQL server's clock from ours (midpoint of a round trip)."""
        if not self._sync_clock or self._be is None or self._be.store.shares_clock:
            return
        t0 = now_us()
        server = await self._be.store.server_time_us()
        t1 = now_us()
        if t1 - t0 > _CLOCK_ROUND_TRIP_US and self._offset_us:
            # The midpoint of a slow round trip says little: the process may have been
            # paused on either side of the server's reading (a SIGSTOP, a suspended VM),
            # which would shift every lease by the pause. Keep the last good offset.
            return
        offset = server - (t0 + t1) // 2
        if abs(offset - self._offset_us) > 100_000:
            log.warning("clock offset to the SQL server: %+.3f s", offset / 1e6)
        self._offset_us = offset

    async def _check_redis(self) -> None:
        assert self._be is not None
        policy = await self._be.broker.maxmemory_policy()
        if policy is not None and policy != "noeviction":
            log.warning(
                "Redis maxmemory-policy is %r: Redis may evict queued messages under memory "
                "pressure (SQL still has them, but they wait for a resync). Set "
                "maxmemory-policy noeviction.",
                policy,
            )

    def _on_signal(self) -> None:
        if self._stop.is_set():
            log.warning("second signal: cancelling running jobs now")
            self.config = _replace_grace(self.config, 0.0)
            for t in list(self._jobs):
                t.cancel()
        self.stop()

    async def _startup_recovery(self) -> None:
        """Reload unfinished jobs at startup: re-dispatch ``todo`` jobs created within the
        look-back window that this Redis may not hold."""
        assert self._be is not None
        cfg = self.config
        created_after = self.clock() - int(cfg.lookback * 1e6)
        n = await sweep_pass(
            self._be,
            self.clock,
            cfg,
            SweepCursor(),
            grace=self.startup_grace,
            limit=10**9,
            created_after=created_after,
        )
        if n:
            log.info("startup recovery: re-dispatched %d unfinished job(s)", n)

    @property
    def startup_grace(self) -> float:
        """Startup recovery's sweeper grace: a job not marked dispatched is re-sent once
        its last write is this old."""
        return min(self.config.sweep_grace, 5.0)

    async def _shutdown(self, side: set[asyncio.Task[None]]) -> None:
        assert self._be is not None
        assert self._recorder is not None
        assert self._claimer is not None
        self.core.stop()
        for t in side:
            t.cancel()
        for t in side:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        stuck = await self._stop_jobs()
        self._threads.close()
        await self._claimer.close()
        await self._recorder.close()
        be = self._be
        try:
            # Every handler has stopped and every finish is recorded: whatever still runs
            # under this runner in SQL is unfinished. Put it back, attempt not used up
            # (but not a job whose handler ignored its cancellation: it may still run;
            # its lease runs out once this process is gone, and the reclaimer decides).
            released = await be.store.release_owner(
                be.queue_name, self.id, self.clock(), keep=stuck
            )
            self.stats.released += released
            if released:
                log.info("put back %d unfinished job(s)", released)
            moved = await be.broker.requeue_all(self.id)
            if moved:
                log.info("returned %d message(s) from the working list to ready", moved)
            await be.broker.forget_runner(self.id)
        except BackendError as exc:
            log.error("shutdown could not put jobs back (%s); the reclaimer will", exc)
        try:
            for hook in self.queue.shutdown_hooks:
                await hook(self.state)
        finally:
            log.info("runner %s stopped: %s", self.id, self.stats)

    def _recording_tasks(self) -> set[asyncio.Task[Any]]:
        """The job tasks whose handler is done and whose outcome is being recorded."""
        if self._recorder is None:
            return set()
        recording = self._recorder.recording
        return {t for job_id, (token, t) in self._running.items() if (job_id, token) in recording}

    async def _stop_jobs(self) -> list[str]:
        """Give the job tasks the grace period, then cancel the rest and wait for their
        cancellation. Claims in flight at the stop signal still spawn job tasks (which do
        not start their handlers, see ``_may_start``): every task is waited for, not a
        snapshot. Returns the ids of jobs whose handler ignored its cancellation."""
        loop = asyncio.get_running_loop()
        if self._jobs:
            grace = self.config.shutdown_grace
            log.info("waiting up to %.1fs for %d running job(s)", grace, len(self._jobs))
        deadline = loop.time() + self.config.shutdown_grace
        while self._jobs and loop.time() < deadline:
            await asyncio.wait(set(self._jobs), timeout=deadline - loop.time())
        # A handler under a time limit waits ABANDON_AFTER for its own cancellation (and
        # is abandoned after that): give it a little longer than that here. A job whose
        # handler is done and whose outcome is on its way to SQL is not cancelled: its
        # outcome would be withdrawn, and the job put back below as if it had not run.
        cancel_by = loop.time() + ABANDON_AFTER + 0.5
        while self._jobs and loop.time() < cancel_by:
            recording = self._recording_tasks()
            for t in self._jobs:
                if t not in recording:
                    t.cancel()
            await asyncio.wait(set(self._jobs), timeout=cancel_by - loop.time())
        # (an outcome still not recorded by now, SQL out of reach: its job stays running
        # under this runner in SQL, not put back; its lease runs out and the reclaimer
        # decides, as for a handler that ignored its cancellation)
        stuck = [job_id for job_id, (_, t) in self._running.items() if t in self._jobs]
        # (a sync handler's thread cannot be cancelled: it may run on after its task)
        stuck += sorted((abandoned_jobs() | self._threads.running_jobs()) - set(stuck))
        if not stuck:
            return []
        log.error(
            "%d handler(s) ignored their cancellation (jobs %s): not put back; their "
            "leases run out and the reclaimer decides",
            len(stuck),
            ", ".join(stuck),
        )
        return stuck


def _replace_grace(cfg: RunnerConfig, grace: float) -> RunnerConfig:
    from dataclasses import replace

    return replace(cfg, shutdown_grace=grace)
