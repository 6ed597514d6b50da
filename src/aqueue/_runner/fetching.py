"""Fetching: moving messages from the ready lists (and suspect lanes) into this
runner's working list as slots free up, and burst mode's end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from .._errors import (
    BackendError,
)
from .faults import crash_point
from .jobs import JobRunner
from .recovery import SweepCursor, sweep_pass

log = logging.getLogger("aqueue.runner")


_TRICKLE_WAIT = 0.001
"""A blocking wait that lasted longer than this found the ready list empty."""


class Fetcher(JobRunner):
    """The fetch loop and what it decides: how many messages, from which list."""

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
