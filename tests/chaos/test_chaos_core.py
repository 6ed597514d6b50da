"""Fault injection against real runner processes and real servers.

Every test runs ``python -m aqueue run`` subprocesses (lease 2 s, heartbeat 0.5 s) against
a Redis of its own (which it may kill, restart, flush or freeze) and the shared MariaDB
(its own table); the tests of SQL durability (kill -9 and crash points, SIGTERM's give
back, Redis lost and resynced from SQL) run on the shared PostgreSQL too
(``@on_both_databases``); the other Redis faults run on MariaDB only. Handlers record
each execution on the shared Redis, which no test disturbs; the verdict compares those
records with the final SQL statuses (see ``harness.py``). Recovery and exit times are
printed (run with ``-s`` to see them) and asserted against generous bounds (the machine
may be loaded).

Faults: kill -9 of a runner mid-job, three times, under load; a crash at a crash point
(after_fetch, after_handler, after_commit); SIGTERM with a short grace; Redis restarted
empty or FLUSHALLed mid-run; Redis frozen longer than a lease; Redis dropping every client
connection while retries are recorded. Tests wait for what they check (a row, a log line,
an execution event) with a deadline; the sleeps left are the faults themselves (a freeze,
the rhythm of connection drops) or the pacing of a load generator.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from aqueue import JobStatus

from .harness import (
    ChaosEnv,
    RedisServer,
    RunnerProcess,
    Verdict,
    drain,
    on_both_databases,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.mysql]

MakeEnv = Callable[..., Awaitable[ChaosEnv]]
CONCURRENCY = 50
CRASH_EXIT = 86


def metric(name: str, value: float | int | str) -> None:
    if isinstance(value, float):
        value = f"{value:.2f}"
    print(f"[chaos] {name}: {value}")


def timed(name: str, seconds: float, bound: float) -> None:
    """Print a measured recovery or exit time, and fail when it exceeds ``bound``."""
    metric(name, seconds)
    assert seconds <= bound, f"{name}: {seconds:.2f}s, more than {bound}s"


def message_ids(raws: list[bytes]) -> list[str]:
    """Job ids of queue messages (anything else in a list, e.g. a wake-up token, skipped)."""
    out = []
    for m in raws:
        try:
            out.append(json.loads(m)["id"])
        except (ValueError, TypeError, KeyError):
            continue
    return out


def working_lists(env: ChaosEnv, server: RedisServer) -> dict[str, list[str]]:
    r = server.client()
    try:
        return {
            k.decode(): message_ids(r.lrange(k, 0, -1))
            for k in r.scan_iter(match=f"{env.tag}:working:*")
        }
    finally:
        r.close()


async def wait_runner_id(p: RunnerProcess, timeout: float = 20.0) -> str:
    rid: str = await wait_for(p.runner_id, timeout, f"{p.name} to start", procs=(p,))
    return rid


async def wait_saturated(env: ChaosEnv, p: RunnerProcess, n: int, timeout: float = 20.0) -> str:
    """Wait until runner ``p`` holds at least ``n`` running jobs in SQL."""
    rid = await wait_runner_id(p, timeout)

    async def full() -> bool:
        return len(await env.running_of(rid)) >= n

    await wait_for(full, timeout, f"{p.name} to run {n} jobs", procs=(p,), interval=0.02)
    return rid


async def wait_busy(env: ChaosEnv, p: RunnerProcess, n: int, timeout: float = 20.0) -> str:
    """Wait until runner ``p`` holds ``n`` jobs in SQL with (nearly) as many handlers
    running right now (claimed is not enough: the handlers must be mid-job)."""
    rid = await wait_runner_id(p, timeout)

    async def busy() -> bool:
        if len(env.checker.open_on(p.pid)) < n - 5:
            return False
        return len(await env.running_of(rid)) >= n

    await wait_for(busy, timeout, f"{p.name} to be mid-job on {n} jobs", procs=(p,), interval=0.02)
    return rid


def stop_all(*procs: RunnerProcess, timeout: float = 15.0) -> None:
    for p in procs:
        if p.alive():
            p.term()
    for p in procs:
        code = p.finish(timeout)
        assert code == 0, f"{p.name} exited with {code}:\n{p.tail()}"
        assert "Traceback" not in p.log(), p.tail()


def assert_clean(v: Verdict, *, reruns_allowed: set[str] | None = None) -> None:
    """Nothing lost, stuck, unexpected or run concurrently (and re-runs only where allowed)."""
    assert not v.lost, v.report
    assert not v.stuck, v.report
    assert not v.unexpected, v.report
    assert not v.concurrent, v.report
    if reruns_allowed is not None:
        assert set(v.reruns) <= reruns_allowed, v.report


# -- kill -9 of a runner mid-job under load ------------------------------------------------


@pytest.mark.timeout(90)
@on_both_databases
async def test_kill9_runner_mid_job_under_load(chaos: MakeEnv, own_redis: RedisServer) -> None:
    env = await chaos(own_redis.url)
    ids = await env.enqueue_work(1500)
    stop_feeding = asyncio.Event()

    async def feed() -> None:
        """Keep a backlog so that every runner stays saturated through the kills."""
        while not stop_feeding.is_set():
            if (await env.counts()).get("todo", 0) < 800:
                ids.extend(await env.enqueue_work(500, start=len(ids)))
            await asyncio.sleep(0.1)  # the feed's pace (load, not a wait)

    steady = env.spawn("-c", str(CONCURRENCY), name="steady")
    victim = env.spawn("-c", str(CONCURRENCY), name="victim-1")
    feeder = asyncio.create_task(feed())
    kills: list[tuple[int, int, set[str]]] = []  # (pid, kill time us, jobs it held in SQL)
    try:
        for round_ in range(1, 4):
            rid = await wait_busy(env, victim, CONCURRENCY, 30)
            killed_at = victim.kill9()
            held = await env.running_of(rid)
            kills.append((victim.pid, killed_at, held))
            metric(f"kill {round_}: jobs held in SQL by the dead runner", len(held))
            assert steady.alive(), steady.tail()
            victim = env.spawn("-c", str(CONCURRENCY), name=f"victim-{round_ + 1}")
    finally:
        stop_feeding.set()
        await feeder
    metric("jobs enqueued", len(ids))
    elapsed = await drain(env, len(ids), 60, procs=(steady, victim))
    timed("drain after the last kill (s)", elapsed, 60.0)
    stop_all(steady, victim)

    v = await env.verdict(ids)
    metric("verdict", v.report)
    caught = set().union(*(held for _, _, held in kills))
    assert_clean(v, reruns_allowed=caught)
    in_flight = sum(len(held) for _, _, held in kills)
    assert in_flight >= 3 * (CONCURRENCY - 10), [len(h) for _, _, h in kills]
    assert len(v.duplicated) <= in_flight, v.report
    # Each kill costs a caught job at most one more run.
    for j, n in v.starts.items():
        allowed = 1 + sum(j in held for _, _, held in kills)
        assert n <= allowed, (j, n, v.report)

    # A re-run only starts once the dead runner's lease ran out (lease 2 s, renewed every
    # 0.5 s): never within ~1.5 s of the kill.
    runs = env.checker.by_job()
    gaps: list[float] = []
    for pid, killed_at, held in kills:
        for j in held:
            es = runs.get(j, [])
            if any(e.pid == pid for e in es):
                later = [e.start_us for e in es if e.pid != pid and e.start_us > killed_at]
                assert later, (j, es)
                gaps.append((min(later) - killed_at) / 1e6)
    assert gaps, "no caught job had started its handler"
    metric("kill -> re-run of a caught job, min (s)", min(gaps))
    # lease 2 s, reclaim period 0.5 s, then a suspect lane's turn on a busy runner
    timed("kill -> re-run of a caught job, max (s)", max(gaps), 30.0)
    assert min(gaps) >= 1.2, sorted(gaps)[:5]


# -- crash points --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("point", "nth"), [("after_fetch", 3), ("after_handler", 20), ("after_commit", 3)]
)
@on_both_databases
async def test_crash_point_then_recovery(
    chaos: MakeEnv, own_redis: RedisServer, point: str, nth: int
) -> None:
    env = await chaos(own_redis.url)
    ids = await env.enqueue_work(1000)
    crasher = env.spawn(
        "-c", str(CONCURRENCY), name="crasher", AQUEUE_TEST_CRASH_AT=f"{point}:{nth}"
    )
    code = crasher.finish(40)
    assert code == CRASH_EXIT, crasher.tail()
    assert f"test crash point {point} reached" in crasher.log()
    rid = crasher.runner_id()
    assert rid is not None
    crashed_at = crasher.exited_at_us
    assert crashed_at is not None

    # What the crash left behind, before anyone recovers it.
    rows = await env.rows()
    held = {j for j, r in rows.items() if r["status"] == "running" and r["lease_owner"] == rid}
    in_working = set(working_lists(env, own_redis).get(f"{env.tag}:working:{rid}", []))
    ran_there = {e.job: e for e in env.checker.executions() if e.pid == crasher.pid}
    metric(f"{point}: jobs held in SQL by the crashed runner", len(held))
    assert held <= in_working
    if point == "after_fetch":
        # fetched into the working list, never claimed
        caught = {j for j in in_working if rows[j]["status"] == "todo"}
        assert not caught & set(ran_there)
    elif point == "after_handler":
        # handler returned, outcome not recorded
        caught = {j for j, e in ran_there.items() if e.completed and j in held}
    else:
        # outcome recorded, message still in the working list
        caught = {j for j in in_working if rows[j]["status"] == "done"}
        assert all(ran_there[j].completed for j in caught)
    metric(f"{point}: jobs caught at the crash point", len(caught))
    assert caught, (point, len(held), len(in_working))

    started = time.monotonic()
    runner = env.spawn("-c", str(CONCURRENCY), name="recoverer")
    await drain(env, len(ids), 40, procs=(runner,))
    timed(f"{point}: recoverer start -> all done (s)", time.monotonic() - started, 40.0)
    stop_all(runner)

    v = await env.verdict(ids)
    metric(f"{point}: verdict", v.report)
    assert_clean(v, reruns_allowed=held)
    assert set(v.duplicated) <= held, v.report
    for j in held:
        assert v.starts[j] <= 2, (j, v.report)
    expected_runs = {"after_fetch": 1, "after_handler": 2, "after_commit": 1}[point]
    for j in caught:
        assert v.starts[j] == expected_runs, (j, v.starts[j], v.report)
        assert v.completions[j] == expected_runs, (j, v.completions[j], v.report)
    final = await env.rows()
    assert all(final[j]["status"] == "done" for j in caught)
    if point == "after_handler":
        # the re-run only started once the crashed runner's lease ran out
        runs = env.checker.by_job()
        first = min(e.start_us for j in caught for e in runs[j] if e.pid != crasher.pid)
        rerun_s = (first - crashed_at) / 1e6
        timed("after_handler: crash -> re-run of the caught job (s)", rerun_s, 30.0)
        assert first - crashed_at >= 1_200_000


# -- SIGTERM with a short grace ------------------------------------------------------------


@pytest.mark.timeout(60)
@on_both_databases
async def test_sigterm_short_grace_puts_running_jobs_back_once(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    ids = await env.enqueue_work(1000)
    first = env.spawn("-c", str(CONCURRENCY), "--grace", "0.2", name="first", AQC_WORK_SLEEP="30")
    rid = await wait_busy(env, first, CONCURRENCY)
    # claimed in SQL: the running handlers plus the prefetched jobs waiting for a slot
    held = await env.running_of(rid)
    assert len(held) >= CONCURRENCY

    t0 = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.finish(10) == 0, first.tail()
    timed("SIGTERM -> exit, 50 handlers running (s)", time.monotonic() - t0, 6.0)
    assert "Traceback" not in first.log(), first.tail()

    rows = await env.rows()
    for j in ids:
        r = rows[j]
        assert r["status"] == "todo" and r["attempts"] == 0, (j, r)
        assert r["lease_owner"] is None and r["lease_token"] is None, (j, r)
    interrupted = {e.job for e in env.checker.executions() if e.pid == first.pid}
    metric("SIGTERM: jobs held / handlers interrupted", f"{len(held)} / {len(interrupted)}")
    assert len(interrupted) >= CONCURRENCY - 5
    assert interrupted <= held
    assert all(
        e.end_us is not None and not e.completed
        for e in env.checker.executions()
        if e.pid == first.pid
    )
    # Every job is in Redis exactly once: the 50 put back and the 950 never taken.
    r = own_redis.client()
    try:
        ready = Counter(
            i
            for k in r.scan_iter(match=f"{env.tag}:ready*")
            for i in message_ids(r.lrange(k, 0, -1))
        )
    finally:
        r.close()
    assert set(ready) == set(ids) and set(ready.values()) == {1}, (len(ready), ready)
    assert not any(working_lists(env, own_redis).values())

    second = env.spawn("-c", str(CONCURRENCY), name="second")
    elapsed = await drain(env, len(ids), 40, procs=(second,))
    timed("second runner: drain 1000 jobs (s)", elapsed, 40.0)
    stop_all(second)
    v = await env.verdict(ids)
    metric("verdict", v.report)
    assert_clean(v)
    assert set(v.reruns) == interrupted, v.report
    assert all(v.starts[j] == 2 and v.completions[j] == 1 for j in interrupted), v.report
    assert not v.duplicated, v.report
    rows = await env.rows()
    assert all(rows[j]["attempts"] == 1 for j in ids)


# -- Redis loses its data mid-run ----------------------------------------------------------


async def _redis_loses_data(
    chaos: MakeEnv, own_redis: RedisServer, how: str, fault: Callable[[], None]
) -> None:
    env = await chaos(own_redis.url)
    ids = await env.enqueue_work(2500)
    a = env.spawn("-c", str(CONCURRENCY), name="a")
    b = env.spawn("-c", str(CONCURRENCY), name="b")
    await wait_saturated(env, a, CONCURRENCY)
    await wait_saturated(env, b, CONCURRENCY)

    async def some_done() -> bool:
        return (await env.counts()).get("done", 0) >= 300

    await wait_for(some_done, 20, "300 jobs done", procs=(a, b))
    before = await env.counts()
    metric(f"{how}: SQL at the fault", before)
    assert before.get("running", 0) >= CONCURRENCY
    t0 = time.monotonic()
    fault()
    await drain(env, len(ids), 45, procs=(a, b))
    timed(f"{how}: fault -> all {len(ids)} jobs done (s)", time.monotonic() - t0, 45.0)
    stop_all(a, b)
    resynced = sum("Redis lost its data" in p.log() for p in (a, b))
    assert resynced >= 1, a.tail() + b.tail()
    v = await env.verdict(ids)
    metric(f"{how}: verdict", v.report)
    assert_clean(v)
    assert not v.duplicated, v.report


@pytest.mark.timeout(75)
@on_both_databases
async def test_redis_shutdown_nosave_and_restart_mid_run(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    await _redis_loses_data(chaos, own_redis, "restart", own_redis.restart)


@pytest.mark.timeout(75)
async def test_redis_flushall_mid_run(chaos: MakeEnv, own_redis: RedisServer) -> None:
    def flushall() -> None:
        r = own_redis.client()
        try:
            r.flushall()
        finally:
            r.close()

    await _redis_loses_data(chaos, own_redis, "flushall", flushall)


# -- Redis frozen longer than a lease ------------------------------------------------------


@pytest.mark.timeout(75)
async def test_redis_frozen_longer_than_a_lease(chaos: MakeEnv, own_redis: RedisServer) -> None:
    env = await chaos(own_redis.url)
    # Long jobs first (FIFO), fewer than one runner's concurrency so that none waits behind
    # the others in its prefetch: they run through the whole freeze on renewed leases.
    long_ids = await env.enqueue_work(40, sleep_s=4.5)
    ids = long_ids + await env.enqueue_work(3000, start=40)
    a = env.spawn("-c", str(CONCURRENCY), name="a")
    b = env.spawn("-c", str(CONCURRENCY), name="b")

    def long_started() -> bool:
        started = {e.job for e in env.checker.executions()}
        return len(started & set(long_ids)) == len(long_ids)

    await wait_for(long_started, 20, "the long jobs to start", procs=(a, b))
    await wait_saturated(env, a, CONCURRENCY)
    await wait_saturated(env, b, CONCURRENCY)
    own_redis.freeze()
    metric("freeze: SQL at the freeze", await env.counts())
    try:
        await asyncio.sleep(3.0)  # the freeze, longer than the 2 s lease
        during = await env.counts()
    finally:
        own_redis.thaw()
    metric("freeze: SQL at the thaw", during)
    t0 = time.monotonic()
    await drain(env, len(ids), 45, procs=(a, b))
    timed("freeze: thaw -> all done (s)", time.monotonic() - t0, 45.0)
    stop_all(a, b)
    v = await env.verdict(ids)
    metric("freeze: verdict", v.report)
    assert_clean(v)
    assert not v.reruns, v.report
    assert not v.duplicated, v.report
    for p in (a, b):
        log = p.log()
        assert "Redis heartbeat failed" in log, p.tail()  # the freeze was felt
        assert "reclaimed job" not in log, p.tail()
        assert "lease renewal in SQL failed" not in log, p.tail()
        assert "no lease renewal acknowledged" not in log, p.tail()
    rows = await env.rows()
    assert all(rows[j]["status"] == JobStatus.DONE and rows[j]["attempts"] == 1 for j in ids)


# -- Redis drops every connection (no data lost) while retries are being recorded ----------


@pytest.mark.timeout(60)
async def test_redis_connections_dropped_while_retries_are_recorded(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    jobs = await env.queue.enqueue_many([("fail_once", (i, 0.05, 0.3), {}) for i in range(1000)])
    ids = [j.id for j in jobs]
    runner = env.spawn("-c", str(CONCURRENCY), name="runner")
    await wait_busy(env, runner, CONCURRENCY)
    r = own_redis.client()
    try:
        for _ in range(15):
            r.client_kill_filter(_type="normal", skipme=True)
            await asyncio.sleep(0.15)  # the rhythm of the drops: the fault
    finally:
        r.close()
    t0 = time.monotonic()
    try:
        await drain(env, len(ids), 12, procs=(runner,))
        timed("connections dropped: last drop -> all done (s)", time.monotonic() - t0, 12.0)
    finally:
        v = await env.verdict(ids)
        metric("connections dropped: verdict", v.report)
    stop_all(runner)
    assert_clean(v)
    assert not v.duplicated, v.report
    assert all(v.starts[j] == 2 and v.completions[j] == 1 for j in ids), v.report
