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
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .._context import JobContext
from .._dispatch import Routes, route_give_back
from .._errors import (
    BackendError,
    CommitError,
    RunnerCrashedError,
    SerializationError,
    UnsupportedMessageError,
)
from .._ids import new_runner_id, now_us
from .._message import Message, decode_message, message_job_id
from .._models import JobStatus
from .._serde import dumps, encode_reason
from . import gctune
from . import side as side_tasks
from .claim import Claimed, Claimer
from .config import RunnerConfig
from .core import RunnerCore
from .execute import ABANDON_AFTER, Outcome, abandoned_jobs, execute, run_after_hooks
from .faults import crash_point
from .finish import Recorder
from .gate import Gate
from .host import RunnerStats
from .recovery import SweepCursor, sweep_pass
from .scheduler import run_scheduler
from .watchdog import Watchdog

if TYPE_CHECKING:
    from .._backend import Backend
    from .._registry import Registry

log = logging.getLogger("aqueue.runner")


_CLOCK_ROUND_TRIP_US = 50_000
"""A clock reading whose round trip took longer than this is not trusted."""

_TRICKLE_WAIT = 0.001
"""A blocking wait that lasted longer than this found the ready list empty."""


class _Slot:
    """One job's share of the runner's slots (concurrency + prefetch), given back once."""

    __slots__ = ("_held", "_runner")

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._runner._release_slots(1)


class Runner:
    def __init__(
        self,
        queue: Registry,
        config: RunnerConfig | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.queue = queue
        self.config = config or RunnerConfig()
        self.id = new_runner_id()
        # Lease arithmetic follows the SQL server's clock (leases live in SQL): the
        # runner's wall clock plus an offset measured against it. Tests may inject one.
        self._offset_us = 0
        self._sync_clock = clock is None
        self.clock: Callable[[], int] = clock or self._server_clock
        self.stats = RunnerStats()
        self.state: dict[str, Any] = {}
        self._stop = asyncio.Event()
        cfg = self.config
        # The state behind the runner's promises, and the decisions on it (sans-I/O).
        self.core: RunnerCore[asyncio.Task[None], asyncio.Task[None]] = RunnerCore(
            concurrency=cfg.concurrency,
            prefetch=cfg.prefetch_count,
            lease=cfg.lease,
            margin=cfg.margin,
            now=time.monotonic(),
        )
        self._handler_gate = Gate(self.config.concurrency)
        self._free_changed = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()
        self._running = self.core.running
        self._revoked = self.core.revoked
        self._task_sems: dict[str, Gate] = {}
        self._inflight = self.core.inflight
        self._last_burst_resync = 0.0
        self._next_suspect_check = 0.0
        self._sweep_cursor = SweepCursor()
        self._be: Backend | None = None
        self._recorder: Recorder | None = None
        self._claimer: Claimer | None = None
        self.started = asyncio.Event()

    # The core's fields under the names the claimer, recorder and side tasks read.
    @property
    def _stopping(self) -> bool:
        return self.core.stopping

    @_stopping.setter
    def _stopping(self, value: bool) -> None:
        self.core.stopping = value

    @property
    def _last_ack(self) -> float:
        return self.core.last_ack

    @_last_ack.setter
    def _last_ack(self, value: float) -> None:
        self.core.last_ack = value

    @property
    def _epoch(self) -> str | None:
        return self.core.epoch

    @_epoch.setter
    def _epoch(self, value: str | None) -> None:
        self.core.epoch = value

    @property
    def _slots(self) -> int:
        return self.core.slots

    @property
    def _free(self) -> int:
        return self.core.free

    # -- public ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the runner to stop: no new jobs; running ones get the grace period."""
        if not self._stop.is_set():
            log.info("runner %s stopping", self.id)
        self._stop.set()

    async def run(self) -> None:
        be = await self._connect()
        cfg = self.config
        await self._check_redis()
        self._epoch = await be.broker.epoch()
        # SQLite runs one write at a time: a second statement in flight would only queue
        # behind the first, with fewer rows than if it had waited.
        lanes = 1 if be.store.single_writer else 2
        self._recorder = Recorder(self, be, batch=cfg.batch, lanes=lanes)
        self._claimer = Claimer(self, be, batch=cfg.batch, lanes=lanes)
        await be.broker.heartbeat(self.id, int(cfg.lease * 1000))
        self._last_ack = time.monotonic()
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
        side = {
            loop.create_task(self._fetch_loop(), name="aqueue-fetcher"),
            loop.create_task(side_tasks.heartbeat_loop(self), name="aqueue-heartbeat"),
            loop.create_task(side_tasks.promote_loop(self), name="aqueue-promoter"),
            loop.create_task(side_tasks.reclaim_loop(self), name="aqueue-reclaimer"),
            loop.create_task(side_tasks.sweep_loop(self), name="aqueue-sweeper"),
        }
        if self.queue.schedules:
            side.add(
                loop.create_task(
                    run_scheduler(self.queue, self.clock, lambda: self._stopping),
                    name="aqueue-scheduler",
                )
            )
        watchdog = Watchdog(loop, cfg.watchdog) if cfg.watchdog else None
        log.info(
            "runner %s started: queue %r, %d task(s), concurrency %d%s",
            self.id,
            self.queue.name,
            len(self.queue.tasks),
            cfg.concurrency,
            ", burst" if cfg.burst else "",
        )
        tuned = gctune.tune(cfg.gc_threshold)
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

    def _server_clock(self) -> int:
        return now_us() + self._offset_us

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
        self._stopping = True
        for t in side:
            t.cancel()
        for t in side:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        stuck = await self._stop_jobs()
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
        # is abandoned after that): give it a little longer than that here.
        cancel_by = loop.time() + ABANDON_AFTER + 0.5
        while self._jobs and loop.time() < cancel_by:
            for t in self._jobs:
                t.cancel()
            await asyncio.wait(set(self._jobs), timeout=cancel_by - loop.time())
        stuck = [job_id for job_id, (_, t) in self._running.items() if t in self._jobs]
        stuck += sorted(abandoned_jobs() - set(stuck))
        if not stuck:
            return []
        log.error(
            "%d handler(s) ignored their cancellation (jobs %s): not put back; their "
            "leases run out and the reclaimer decides",
            len(stuck),
            ", ".join(stuck),
        )
        return stuck

    # -- fetch & claim -------------------------------------------------------------------

    def _release_slots(self, n: int) -> None:
        self.core.free += n
        self._free_changed.set()

    async def _fetch_loop(self) -> None:
        assert self._be is not None
        broker = self._be.broker
        cfg = self.config
        backoff = 0.05
        idle_since: float | None = None
        trickle = False
        while not self._stop.is_set():
            if self._local_deadline_passed():
                await asyncio.sleep(cfg.heartbeat / 4)
                continue
            # With work in flight, wait until a quarter of the slots are free: moves and
            # claims then go in batches (fewer round trips and statements per job). An
            # idle runner fetches at once, so latency does not suffer.
            while not (n := self.core.fetch_size(cfg.batch, busy=bool(self._jobs))):
                self._free_changed.clear()
                await self._free_changed.wait()
            try:
                if time.monotonic() >= self._next_suspect_check:
                    self._next_suspect_check = time.monotonic() + 0.5
                    if await broker.suspects_waiting():
                        if await self._run_suspects():
                            self._next_suspect_check = 0.0  # more may wait: look again
                        continue
                # A trickle (the last blocking wait had to wait): the ready list is most
                # likely empty, so block again at once instead of first trying to take.
                raws = [] if trickle else await broker.take(self.id, n)
                if not raws:
                    if cfg.burst and not self._jobs and await self._burst_done(idle_since):
                        log.info("burst: no job left, stopping")
                        self.stop()
                        return
                    asked = time.monotonic()
                    one = await broker.wait_one(self.id, 0.1 if cfg.burst else cfg.block_timeout)
                    trickle = one is not None and time.monotonic() - asked > _TRICKLE_WAIT
                    if one is None:
                        if idle_since is None:
                            idle_since = time.monotonic()
                        continue
                    if one == b"":  # woken for a high/low priority message
                        trickle = False
                        raws = await broker.take(self.id, n)
                        if not raws:
                            continue
                    else:
                        # Start this one at once; if more arrived, the next turn of the
                        # loop takes them in one batch before blocking again.
                        raws = [one]
                else:
                    trickle = False
                idle_since = None
                backoff = 0.05
            except BackendError as exc:
                if self._stop.is_set():
                    return
                log.warning("fetching from Redis failed (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                with contextlib.suppress(BackendError):  # still down: next time
                    await self._reconcile_working()
                continue
            crash_point("after_fetch")
            self._start_batch(raws)

    async def _wait_all_free(self) -> None:
        """Until nothing is in flight here: no handler running and no outcome waiting
        to be recorded (a job whose outcome is not yet in SQL still counts as running
        under this runner, and would be charged a stall if the runner died now)."""
        while not self.core.all_free(busy=bool(self._jobs)):
            self._free_changed.clear()
            await self._free_changed.wait()

    async def _run_suspects(self) -> int:
        """Run jobs whose runner died while they ran, with nothing else in flight here.
        Jobs one stall away from the limit run alone, so a poison job that kills its
        runner is the only one charged; the others run in small groups (an innocent
        neighbour of a poison job is charged once there, then runs alone and passes)."""
        assert self._be is not None
        broker = self._be.broker
        await self._wait_all_free()
        alone = await broker.take_suspect(self.id, alone=True)
        raws = [alone] if alone is not None else []
        if not raws:
            for _ in range(min(10, self._slots)):
                raw = await broker.take_suspect(self.id)
                if raw is None:
                    break
                raws.append(raw)
        if not raws:
            return 0
        log.info(
            "running %d suspect job(s)%s (their previous runner died)",
            len(raws),
            " alone" if alone is not None else " as a group",
        )
        self._start_batch(raws)
        await self._wait_all_free()
        return len(raws)

    async def _burst_done(self, idle_since: float | None) -> bool:
        assert self._be is not None
        if idle_since is None:
            return False
        ready, delayed = await self._be.broker.lengths()
        if ready:
            return False
        moved, next_ms = await self._be.broker.promote()
        if moved or next_ms == 0:
            return False
        horizon = self.clock() + int(self.config.burst_horizon * 1e6)
        if await self._be.store.unfinished_count(self.queue.name, horizon) == 0:
            return True
        quiet = time.monotonic() - max(idle_since, self._last_burst_resync) > 2.0
        if quiet and (delayed == 0 or next_ms < 0):
            self._last_burst_resync = time.monotonic()
            await sweep_pass(
                self._be, self.clock, self.config, SweepCursor(), grace=0.0, limit=10**9
            )
            return False
        return False

    def _spawn(self, coro: Coroutine[Any, Any, None], raws: list[bytes]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(task)
        self._inflight[task] = raws

        def done(t: asyncio.Task[None]) -> None:
            self._jobs.discard(t)
            self._inflight.pop(t, None)
            if not self._jobs:
                self._free_changed.set()

        task.add_done_callback(done)

    def _start_batch(self, raws: list[bytes]) -> None:
        """Messages just moved into the working list: one task claims them all (one
        statement), then each won job runs in a task of its own."""
        self.core.free -= len(raws)
        self._spawn(self._claim_batch(raws), raws)

    async def _claim_batch(self, raws: list[bytes]) -> None:
        unused = len(raws)  # slots not handed on to a job task
        try:
            msgs: list[Message] = []
            for raw in raws:
                try:
                    msgs.append(decode_message(raw))
                except SerializationError as exc:
                    await self._malformed(raw, exc)
            assert self._claimer is not None
            claimed = await self._claimer.claim(msgs) if msgs else []
            for c in claimed:
                if c.won:
                    self._spawn(self._run_one(c), [c.msg.raw])
                    unused -= 1
        finally:
            if unused:
                self._release_slots(unused)

    async def _run_one(self, claimed: Claimed) -> None:
        slot = _Slot(self)
        try:
            await self._run_claimed(claimed, slot)
        finally:
            slot.release()

    async def _malformed(self, raw: bytes, exc: Exception) -> None:
        assert self._be is not None
        if isinstance(exc, UnsupportedMessageError):
            # Written by a newer aqueue (a rolling deploy): leave it for a runner that
            # reads it, and look again later.
            log.warning("message of job %s: %s; leaving it for a newer runner", exc.job_id, exc)
            due = self.clock() // 1000 + int(self.config.lease * 1000)
            await self._be.broker.settle(self.id, [raw], delayed=[(due, raw)])
            return
        self.stats.malformed += 1
        job_id = message_job_id(raw)
        log.error("dropping malformed message (job %s): %s", job_id, exc)
        if job_id is not None:
            await self._be.store.fail_unclaimed(
                job_id, encode_reason("SerializationError", str(exc)), self.clock()
            )
        await self._be.broker.settle(self.id, [raw])

    # -- run & finish ------------------------------------------------------------------

    async def _run_claimed(self, claimed: Claimed, slot: _Slot) -> None:
        msg, token = claimed.msg, claimed.token
        task_def = self.queue.tasks.get(msg.task)
        ctx = JobContext(
            job_id=msg.id,
            task=msg.task,
            attempt=msg.attempts + 1,
            max_attempts=msg.max_attempts or (task_def.config.retries + 1 if task_def else 1),
            lease_token=token,
            runner_id=self.id,
            queue=self.queue,
            args=tuple(msg.args),
            kwargs=msg.kwargs,
            state=self.state,
        )
        if task_def is not None and not task_def.config.auto_commit:
            ctx.auto_commit = False
            ctx._committer = self._make_committer(claimed)
        current = asyncio.current_task()
        assert current is not None
        self._running[msg.id] = (token, current)
        try:
            try:
                limit = self._task_limit(task_def.config.concurrency if task_def else None, msg)
                outcome: Outcome | None = None
                if limit is None:
                    async with self._handler_gate:
                        if self._may_start(claimed):
                            outcome = await execute(self.queue, ctx, msg, self.clock)
                else:
                    async with limit, self._handler_gate:
                        if self._may_start(claimed):
                            outcome = await execute(self.queue, ctx, msg, self.clock)
                if outcome is None:
                    await self._give_back(claimed)
                    return
            except asyncio.CancelledError:
                if self.core.revoked_by_us(msg.id, token):
                    # We cancelled it ourselves (lease revoked, or the local deadline
                    # passed): the job is someone else's now, or the reclaimer's once
                    # the lease runs out. Forget our delivery of it; but if its claim
                    # never became durable, SQL may still hold the job as ``todo`` with
                    # no one to send it again: then the message goes back too.
                    current.uncancel()
                    back = False
                    if claimed.commit is not None and self._claimer is not None:
                        back = await self._claimer.confirmed(claimed) == "unknown"
                    await self._settle_retrying(msg.raw, back=back)
                    return
                raise
            crash_point("after_handler")
            self.stats.executed += 1
            if outcome.status is None:  # manual commit
                if not ctx.committed:
                    log.warning(
                        "job %s (manual commit) returned without committing: its lease is "
                        "no longer renewed; the reclaimer will handle it",
                        msg.id,
                    )
                return
            await self._after_hooks(ctx, outcome)
            # The handler and its hooks are done: the slot goes to the next job while the
            # outcome is recorded (the lease is renewed until then; shutdown flushes it).
            slot.release()
            assert self._recorder is not None
            if await self._unconfirmed(claimed):
                return
            await self._recorder.record(msg, token, outcome)
        finally:
            self._forget(msg.id, token)

    def _may_start(self, claimed: Claimed) -> bool:
        """A handler starts only while the runner is not stopping and its lease surely
        holds: before the local deadline, counted from the later of the last renewal
        SQL acknowledged and the claim itself (a runner frozen past its lease, e.g. by
        SIGSTOP, wakes with claimed jobs that may have been reclaimed and run elsewhere)."""
        if self._stop.is_set():
            return False
        return self.core.may_start(claimed.sent_at, time.monotonic())

    async def _give_back(self, claimed: Claimed) -> None:
        """A claimed job that must not start here. When stopping, the shutdown puts it
        back with the others (once every job task has ended). Past the local deadline:
        release its claim in SQL by token (attempt not used up) and return its message
        to the ready list; if the release does not reach SQL, the message's claim fails
        against the running row and the reclaimer sends a fresh copy when the lease ends."""
        if self._stop.is_set():
            return
        assert self._be is not None
        msg, be = claimed.msg, self._be
        log.warning(
            "job %s was claimed but not started before the local deadline (the runner was "
            "paused or SQL unreachable): giving it back",
            msg.id,
        )
        self._forget(msg.id, claimed.token)
        with contextlib.suppress(BackendError):
            if claimed.commit is not None:
                await asyncio.shield(claimed.commit)
        with contextlib.suppress(BackendError):
            await be.store.release_claims([(msg.id, claimed.token)], self.clock())
        self.stats.released += 1
        await self._settle_retrying(msg.raw, back=True)

    async def _unconfirmed(self, claimed: Claimed) -> bool:
        """After the handler ran: True when its claim did not become durable here, so no
        outcome may be recorded. Claimed elsewhere: drop this delivery. Unknown (SQL out
        of reach until the local deadline): put the message back on the ready list; if
        SQL does hold the claim, that copy loses its claim and the reclaimer takes over."""
        assert self._claimer is not None
        verdict = await self._claimer.confirmed(claimed)
        if verdict == "durable":
            return False
        self.stats.claims_lost += 1
        await self._settle_retrying(claimed.msg.raw, back=verdict == "unknown")
        return True

    async def _settle_retrying(self, raw: bytes, *, back: bool) -> None:
        """Remove one delivery from this runner's working list and, if ``back``, send the
        message again (through the delayed set, due now: the promoter puts it on the
        ready list of its priority). Retried while Redis is out of reach: a message left
        in the working list would wait for this runner's exit."""
        assert self._be is not None
        routes = None
        if back:
            routes = Routes()
            route_give_back(routes, raw, self.clock())
        delay = 0.05
        for _ in range(10):
            try:
                await self._be.dispatcher.settle(self.id, [raw], routes)
                return
            except BackendError as exc:
                log.warning("settling in Redis failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _after_hooks(self, ctx: JobContext, outcome: Outcome) -> None:
        await run_after_hooks(self.queue, ctx, outcome)

    def _make_committer(self, claimed: Claimed) -> Any:
        msg, token = claimed.msg, claimed.token

        async def commit(
            ctx: JobContext,
            status: JobStatus,
            result: Any,
            error: str | None,
            delay: float | None,
        ) -> None:
            now = self.clock()
            if status is JobStatus.DONE:
                outcome = Outcome(status, result=dumps(result, "the job's result"))
            elif status is JobStatus.FAILED:
                outcome = Outcome(status, error=encode_reason("Failed", error or "failed"))
            elif status is JobStatus.TODO:
                run_at = now + int(max(0.0, delay or 0.0) * 1e6)
                reason = encode_reason("Retry", error or "put back by the handler")
                outcome = Outcome(status, error=reason, run_at=run_at)
            else:
                raise CommitError(f"cannot commit a job as {status.value!r}")
            await self._after_hooks(ctx, outcome)
            assert self._recorder is not None
            if await self._unconfirmed(claimed):
                raise CommitError(
                    f"commit of job {msg.id} rejected: its claim was never committed here "
                    "(another runner owns the job now, or SQL was out of reach)"
                )
            if not await self._recorder.record(msg, token, outcome):
                raise CommitError(
                    f"commit of job {msg.id} rejected: its lease token was revoked (another "
                    "runner owns the job now)"
                )
            self._forget(msg.id, token)

        return commit

    def _task_limit(self, concurrency: int | None, msg: Message) -> Gate | None:
        """A task's own concurrency limit: at most that many of its jobs run at once here."""
        if concurrency is None:
            return None
        sem = self._task_sems.get(msg.task)
        if sem is None:
            sem = self._task_sems[msg.task] = Gate(concurrency)
        return sem

    def _forget(self, job_id: str, token: str) -> None:
        """Stop renewing this run's lease (only this run's: the same job may have been
        claimed again since, under another token)."""
        self.core.forget(job_id, token)

    async def _reconcile_working(self) -> None:
        """After a Redis error on a move, the reply may have been lost while the move
        happened: messages sit in this runner's working list that no task of it knows.
        Put those back on the ready list."""
        assert self._be is not None
        orphans = self.core.orphans(await self._be.broker.working_items(self.id))
        if orphans:
            await self._be.broker.settle(self.id, orphans, ready=orphans)
            log.warning(
                "returned %d orphaned message(s) to ready after a Redis error", len(orphans)
            )

    # -- side tasks ------------------------------------------------------------------------

    def _local_deadline_passed(self) -> bool:
        return self.core.deadline_passed(time.monotonic())


def _replace_grace(cfg: RunnerConfig, grace: float) -> RunnerConfig:
    from dataclasses import replace

    return replace(cfg, shutdown_grace=grace)
