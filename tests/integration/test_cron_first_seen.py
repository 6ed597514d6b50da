"""Missed ticks of a periodic task, with real runners: a brand-new schedule does not run
its catch-up window at its first start; one whose runners were down catches up the ticks
it missed, within ``catch_up``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aqueue import Queue, Runner, RunnerConfig, current_job
from aqueue._cron import tick_job_id
from aqueue._ids import now_us

from ..conftest import QueueFactory

S = 1_000_000


def periodic_queue(
    make_queue: QueueFactory, every: float, catch_up: float
) -> tuple[Queue, list[str]]:
    q = make_queue()
    ran: list[str] = []

    @q.periodic(every=every, missed="all", catch_up=catch_up, name="tick")
    async def tick() -> None:
        ran.append(current_job().job_id)

    return q, ran


async def run_until(q: Queue, done: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Run a runner until ``done()`` holds (checked every 20 ms), then stop it."""
    runner = Runner(q, RunnerConfig(handle_signals=False, lease=2, heartbeat=0.5))
    task = asyncio.create_task(runner.run())
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert not task.done(), f"the runner stopped while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
            await asyncio.sleep(0.02)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)


def tick_ids(q: Queue, ticks: range) -> dict[str, int]:
    return {tick_job_id(q.name, "tick", t): t for t in ticks}


async def test_a_new_schedule_does_not_run_its_catch_up_window_at_first_start(
    make_queue: QueueFactory,
) -> None:
    every, catch_up = 0.5, 30.0
    q, ran = periodic_queue(make_queue, every, catch_up)
    step = int(every * S)
    started = now_us() // step * step
    await run_until(q, lambda: len(ran) >= 2, "two ticks")
    elapsed = (now_us() - started) / S
    window = tick_ids(q, range(started - int(catch_up * S) + step, started, step))
    assert not set(ran) & set(window), "ticks from before the schedule existed ran"
    stored = sum((await q.counts()).values())
    assert stored <= elapsed / every + 2, (stored, elapsed)


async def test_a_schedule_whose_runners_were_down_catches_up_the_ticks_it_missed(
    make_queue: QueueFactory,
) -> None:
    every = 0.2
    q, ran = periodic_queue(make_queue, every, catch_up=30)
    step = int(every * S)
    await run_until(q, lambda: len(ran) >= 1, "a first tick")
    down_from = now_us()
    # The runners are down for 5 ticks: that span of time is the scenario itself.
    await asyncio.sleep(5 * every)
    back = now_us()
    missed = tick_ids(q, range((down_from // step + 1) * step, back // step * step + 1, step))
    assert len(missed) >= 5
    await run_until(q, lambda: set(missed) <= set(ran), "the missed ticks")
    assert len(ran) == len(set(ran)), "a tick ran twice"


async def test_catch_up_of_a_long_existing_schedule_stays_within_its_window(
    make_queue: QueueFactory,
) -> None:
    every, catch_up = 0.5, 3.0
    q, ran = periodic_queue(make_queue, every, catch_up)
    step = int(every * S)
    # The schedule existed an hour ago and no runner has been up since.
    be = await q._backend()
    sched = q.schedules["tick"]
    await be.store.first_seen(sched.key(q.name), now_us() - 3600 * S)
    started = now_us()
    await run_until(q, lambda: len(ran) >= 7, "the catch-up")
    before = tick_ids(q, range(started // step * step - 3600 * S, started, step))
    caught_up = [before[i] for i in ran if i in before]
    # the ticks of the 3 s window before the first look (6, less those after the start),
    # none older: not the hour since the schedule was first seen
    assert 4 <= len(caught_up) <= 6, sorted((started - t) / S for t in caught_up)
    assert min(caught_up) > started - int((catch_up + every) * S)
