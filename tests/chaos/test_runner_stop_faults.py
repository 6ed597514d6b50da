"""Runner stops and pauses: SIGTERM during claim bursts, a runner frozen with claimed jobs
not yet started, every runner paused at once (a whole machine suspended), and a runner
started just after Redis lost the jobs of a producer that is still up.

Real runner processes (the CLI) with lease 2 s and heartbeat 0.5 s, a Redis of the test's
own, the shared MariaDB (and the shared PostgreSQL for the SIGTERM bursts and the frozen
runner, whose guarantee is the claim's and lease's compare-and-set in SQL); executions
recorded by the handlers on the shared Redis.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest

from .harness import (
    ChaosEnv,
    RedisServer,
    RunnerProcess,
    drain,
    now_us,
    on_both_databases,
    wait_for,
)
from .test_chaos_core import metric, stop_all

pytestmark = [pytest.mark.chaos, pytest.mark.mysql]

MakeEnv = Callable[..., Awaitable[ChaosEnv]]

#: Twice the suite's lease, heartbeat and reclaim period (see the test that uses it).
SLOWER_LEASES = ("--lease", "4", "--heartbeat", "1", "--reclaim-period", "1")


async def wait_started(p: RunnerProcess) -> None:
    await wait_for(p.runner_id, 30, f"{p.name} to start", procs=(p,))


@pytest.mark.timeout(240)
@on_both_databases
async def test_sigterm_during_claim_bursts_never_runs_a_job_concurrently(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    """SIGTERM lands while claims are in flight (a trickle of jobs, each claimed on its
    own as it arrives): from the signal on no handler starts, and every job claimed is
    either finished or cancelled (its cancellation awaited) before it is put back, where
    an idle runner takes it at once."""
    env = await chaos(own_redis.url)
    other = env.spawn("-c", "50", name="other")
    await wait_started(other)
    ids: list[str] = []
    victims = []
    for i in range(8):
        victim = env.spawn("-c", "50", "--grace", "0.3", name=f"victim-{i}", AQC_WORK_SLEEP="2")
        victims.append(victim)
        await wait_started(victim)
        signalled = False
        for _ in range(200):
            ids += await env.enqueue_work(1, start=len(ids))
            if not signalled and len(env.checker.open_on(victim.pid)) >= 3:
                victim.send_signal(signal.SIGTERM)
                signalled = True
                t0 = time.monotonic()
            if signalled and victim.poll() is not None:
                break
            await asyncio.sleep(0.002)  # the trickle's pace
        assert signalled, victim.tail()
        assert victim.finish(15) == 0, victim.tail()
        metric(f"victim {i}: SIGTERM -> exit (s)", time.monotonic() - t0)
        assert time.monotonic() - t0 < 10, victim.tail()
    await drain(env, len(ids), 120, procs=(other,))
    stop_all(other)
    v = await env.verdict(ids)
    metric("verdict", v.report)
    assert not v.lost and not v.stuck and not v.unexpected, v.report
    assert not v.concurrent, v.report
    assert not v.duplicated, v.report
    for victim in victims:
        runs = [e for e in env.checker.executions() if e.pid == victim.pid]
        log = victim.log()
        stopping, put_back = logged_at(log, "stopping"), logged_at(log, "put back")
        # from the signal on, no handler starts (log times are to the millisecond)
        late = [e for e in runs if e.start_us > stopping + 1000]
        assert not late, (late, victim.tail())
        # every handler ended (finished, or cancelled and awaited) before the put-back
        assert all(e.end_us is not None and e.end_us < put_back + 1000 for e in runs), (
            [e for e in runs if e.end_us is None or e.end_us >= put_back + 1000],
            victim.tail(),
        )


def logged_at(log: str, text: str) -> int:
    """Wall-clock µs of the first log line containing ``text``."""
    for line in log.splitlines():
        if text in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return int(stamp.timestamp() * 1e6)
    raise AssertionError(f"no log line with {text!r}:\n{log[-3000:]}")


@pytest.mark.timeout(120)
@on_both_databases
async def test_runner_frozen_past_its_lease_starts_no_claimed_job_after_the_thaw(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    """A runner is SIGSTOPped for 6 s (lease 2 s) holding two running jobs and two
    claimed ones waiting for a slot; another runner reclaims and runs all four. After the
    thaw the frozen runner starts nothing it had claimed: its local deadline has passed."""
    env = await chaos(own_redis.url)
    ids = await env.enqueue_work(4)
    frozen = env.spawn("-c", "2", "--prefetch", "2", name="frozen", AQC_WORK_SLEEP="1.5")
    await wait_started(frozen)
    rid = await wait_for(frozen.runner_id, 10, "runner id")

    async def holds_all() -> bool:
        return len(await env.running_of(rid)) == 4 and len(env.checker.open_on(frozen.pid)) == 2

    await wait_for(holds_all, 20, "4 jobs claimed, 2 running", procs=(frozen,), interval=0.02)
    mid_job = env.checker.open_on(frozen.pid)
    frozen.send_signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    rescuer = env.spawn("-c", "10", name="rescuer")
    try:
        await drain(env, len(ids), 30, procs=(rescuer,))
        # the fault itself: the freeze lasts 6 s in all, three leases
        await asyncio.sleep(max(0.0, 6.0 - (time.monotonic() - frozen_at)))
    finally:
        thaw_us = now_us()
        frozen.send_signal(signal.SIGCONT)
    # Awake again, its frozen handlers end (revoked by the first renewal, or finished and
    # refused), which frees the slots the claimed jobs wait for. Had any of those started,
    # the stop below would not erase its start.
    await wait_for(
        lambda: not env.checker.open_on(frozen.pid), 15, "frozen handlers to end", procs=(frozen,)
    )
    stop_all(frozen, rescuer)
    late = [e for e in env.checker.executions() if e.pid == frozen.pid and e.start_us >= thaw_us]
    assert not late, (late, frozen.tail())
    v = await env.verdict(ids)
    metric("verdict", v.report)
    assert not v.lost and not v.stuck, v.report
    # Only the two handlers frozen mid-job ran twice (and overlapped the rescuer's runs in
    # wall time): the documented window, a runner paused past its lease while it ran.
    assert set(v.reruns) <= mid_job and {c[0] for c in v.concurrent} <= mid_job, v.report
    log = frozen.log()
    assert "giving it back" in log or "was revoked" in log, frozen.tail()


@pytest.mark.timeout(120)
async def test_every_runner_paused_at_once_reclaims_nothing_from_live_runners(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    """All runners are frozen together for 5 s (lease 4 s), twice, with every job
    mid-handler, as when a whole machine is suspended. On resume the reclaimers wait a
    heartbeat period, the live runners renew first: no job is reclaimed, none runs twice.

    The lease and heartbeat are twice the suite's: a runner back from a pause past its
    lease gives the renewal it sends on resuming half a heartbeat before it cancels its
    handlers, and three runners and the database waking at once on two loaded cores can
    take longer than the suite's 0.25 s for that statement (then the jobs rightly run
    again; this test is about the reclaimers' hold, not about that grace)."""
    env = await chaos(own_redis.url)
    # Twice the slots the 30 jobs need: a runner with few slots free waits for more
    # before it fetches (a quarter of its slots), so with exactly 3 x 10 the last job
    # could wait for a handler to end instead of starting before the pause.
    procs = [
        env.spawn("-c", "20", "--prefetch", "0", *SLOWER_LEASES, name=f"r{i}", AQC_WORK_SLEEP="14")
        for i in range(3)
    ]
    for p in procs:
        await wait_started(p)
    ids = await env.enqueue_work(30)

    async def all_mid_job() -> bool:
        return sum(len(env.checker.open_on(p.pid)) for p in procs) == 30

    await wait_for(all_mid_job, 20, "30 handlers running", procs=procs, interval=0.02)
    for _ in range(2):
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        await asyncio.sleep(5.0)  # the pause itself: the fault, not a synchronisation
        # A resumed machine schedules its processes one after another: the first runner
        # runs (its reclaimer at once) while the others are still stopped for a moment.
        procs[0].send_signal(signal.SIGCONT)
        await asyncio.sleep(0.05)
        for p in procs[1:]:
            p.send_signal(signal.SIGCONT)
        await wait_for(
            lambda: (
                all("was paused" in p.log() for p in procs)
                or any("reclaimed job" in p.log() for p in procs)
            ),
            30,
            "every reclaimer to notice its pause",
            procs=procs,
        )
    await drain(env, len(ids), 60, procs=procs)
    stop_all(*procs)
    logs = "".join(p.log() for p in procs)
    assert "reclaimed job" not in logs, logs[-4000:]
    v = await env.verdict(ids)
    metric("verdict", v.report)
    assert not v.lost and not v.stuck and not v.concurrent, v.report
    assert not v.reruns, v.report


@pytest.mark.timeout(90)
async def test_a_runner_paused_while_it_waits_for_the_reclaim_lock_takes_nothing(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    """Redis is frozen long enough for the runner's reclaimer to be waiting for its lock
    (a pass starts every second), then the runner is frozen past its lease and Redis
    thawed. On resuming, the lock's reply is already there and the clock the pass would
    read is past the pause: the leases of the runner's own running jobs look expired
    before it could renew them. The pass must see that it was paused, take nothing and
    hold as after any pause; the jobs run once."""
    env = await chaos(own_redis.url)
    proc = env.spawn("-c", "20", *SLOWER_LEASES, name="r", AQC_WORK_SLEEP="12")
    await wait_started(proc)
    ids = await env.enqueue_work(10)

    async def all_mid_job() -> bool:
        return len(env.checker.open_on(proc.pid)) == 10

    await wait_for(all_mid_job, 20, "10 handlers running", procs=[proc], interval=0.02)
    own_redis.freeze()
    try:
        # The fault's length, not a synchronisation: 1.5 reclaim periods, so that a pass
        # has started and sent its lock request to the frozen server.
        await asyncio.sleep(1.5)
        proc.send_signal(signal.SIGSTOP)
    finally:
        own_redis.thaw()
    await asyncio.sleep(5.0)  # the runner's pause (lease 4 s): the fault itself
    proc.send_signal(signal.SIGCONT)
    await wait_for(
        lambda: "was paused" in proc.log() or "reclaimed job" in proc.log(),
        10,
        "the reclaimer to notice its pause",
        procs=[proc],
    )
    await drain(env, len(ids), 60, procs=[proc])
    stop_all(proc)
    log = proc.log()
    assert "reclaimed job" not in log, log[-4000:]
    v = await env.verdict(ids)
    metric("verdict", v.report)
    assert not v.lost and not v.stuck and not v.concurrent, v.report
    assert not v.reruns, v.report


@pytest.mark.timeout(90)
async def test_runner_started_just_after_redis_lost_fresh_jobs_runs_them_within_seconds(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    """1,000 jobs enqueued by a producer that stays up, Redis flushed right away, a runner
    started at once with the default sweep settings: the jobs' dispatch marks land after
    the runner's first look, and it looks again; all run within 5 s of its start."""
    env = await chaos(own_redis.url)
    ids = await env.enqueue_work(1000, sleep_s=0.0)
    own_redis.client().flushall()
    t0 = time.monotonic()
    p = env.spawn("-c", "50", "--sweep-period", "60", "--sweep-grace", "30", name="late")
    await drain(env, len(ids), 60, procs=(p,))
    elapsed = time.monotonic() - t0
    metric("runner start -> 1,000 jobs done (s)", elapsed)
    stop_all(p)
    assert elapsed <= 5.0, p.tail()
    v = await env.verdict(ids)
    assert not v.lost and not v.stuck and not v.duplicated, v.report
