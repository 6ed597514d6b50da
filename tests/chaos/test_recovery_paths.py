"""Recovery paths that only unit tests covered, through real runner processes.

Each test runs ``python -m aqueue run`` subprocesses (see ``harness.py``: lease 2 s,
heartbeat 0.5 s, reclaim period 0.5 s) against a Redis of its own and the shared MariaDB
(its own table; every test but the repush also on the shared PostgreSQL,
``@on_both_databases``), and ``python -m aqueue repush`` as a user would:

- zombie destinations ``failed`` and ``done``: the jobs of a SIGKILLed runner end there
  with the zombie reason, never run again;
- ``--reclaim-limit``: a reclaim pass takes at most that many expired leases, and every
  one is reclaimed in the end;
- startup recovery's ``--lookback``: after Redis lost its data, jobs created inside the
  window are dispatched at startup, older ones only by the periodic sweeper;
- the periodic purge (``--keep-results``): a finished row goes once it is older than the
  keep time, never before; unfinished rows stay;
- ``repush`` by id and by ``--status failed``: failed jobs run again.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest
import sqlalchemy as sa

from aqueue import JobStatus, Options

from .harness import (
    ChaosEnv,
    RedisServer,
    RunnerProcess,
    drain,
    now_us,
    on_both_databases,
    wait_for,
)
from .test_chaos_core import assert_clean, message_ids, metric, stop_all, timed, wait_busy

pytestmark = [pytest.mark.chaos, pytest.mark.mysql]

MakeEnv = Callable[..., Awaitable[ChaosEnv]]
LEASE, HEARTBEAT = 2.0, 0.5  # harness.RUNNER_DEFAULTS
FAST = "0.05"  # AQC_WORK_SLEEP of a recovering runner: the re-runs are quick
_RECLAIMED = re.compile(r"^(\S+ \S+) .*reclaimed job (\S+) from (\S+) -> (\w+)$", re.M)


def log_time(stamp: str) -> float:
    """Epoch seconds of a runner log line's ``%(asctime)s`` (local time, milliseconds)."""
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def reclaimed(p: RunnerProcess) -> list[tuple[float, str, str]]:
    """(time, job, destination) of each "reclaimed job" line of ``p``'s log."""
    return [(log_time(t), job, dest) for t, job, _owner, dest in _RECLAIMED.findall(p.log())]


async def kill_mid_jobs(env: ChaosEnv, n: int, *args: str) -> tuple[list[str], int]:
    """``n`` long jobs running on a runner (started with ``args``), which is SIGKILLed once
    every handler is mid-job. Returns the job ids and the kill time (wall-clock us)."""
    ids = await env.enqueue_work(n, sleep_s=60)
    victim = env.spawn("-c", str(n), *args, name="victim")
    rid = await wait_busy(env, victim, n)
    assert await env.running_of(rid) == set(ids)
    await wait_for(lambda: len(env.checker.open_on(victim.pid)) == n, 10, "all handlers started")
    return ids, victim.kill9()


async def drain_ids(env: ChaosEnv, ids: list[str], runner: RunnerProcess) -> None:
    """Wait until these jobs are done (others of the queue may stay unfinished)."""

    async def done() -> bool:
        st = await env.statuses()
        return all(st.get(j) is JobStatus.DONE for j in ids)

    await wait_for(done, 20, f"{len(ids)} jobs done", procs=(runner,))


# -- zombie destinations --------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("destination", ["failed", "done"])
@on_both_databases
async def test_jobs_of_a_killed_runner_go_to_the_zombie_destination_without_a_rerun(
    chaos: MakeEnv, own_redis: RedisServer, destination: str
) -> None:
    env = await chaos(own_redis.url)
    ids, killed_at = await kill_mid_jobs(env, 8, "--zombie-destination", destination)
    recoverer = env.spawn(
        "--zombie-destination", destination, name="recoverer", AQC_WORK_SLEEP=FAST
    )
    elapsed = await drain(env, len(ids), 30, procs=(recoverer,))
    recovery = (now_us() - killed_at) / 1e6
    # the lease must run out first (renewed up to a heartbeat before the kill); then one
    # reclaim pass, once the recoverer has started
    timed(f"zombie {destination}: kill -> all {len(ids)} recorded (s)", recovery, 25.0)
    assert recovery >= LEASE - HEARTBEAT, recovery
    stop_all(recoverer)

    rows = await env.sql(
        "SELECT id, status, error, stalls FROM {t} WHERE queue = :q", q=env.queue_name
    )
    assert {r[0] for r in rows} == set(ids)
    for job, status, error, stalls in rows:
        assert status == destination, (job, status, error)
        reason = json.loads(error)
        assert reason["type"] == "RunnerDied", error
        assert reason["message"].startswith("zombie job: lease of "), error
        assert reason["message"].endswith(f"expired; recorded {destination}"), error
        assert stalls == 1
    runs = env.checker.by_job()
    assert {j: len(runs.get(j, [])) for j in ids} == dict.fromkeys(ids, 1)  # the killed run only
    assert all(not e.completed for j in ids for e in runs[j])
    assert sorted(dest for _, _, dest in reclaimed(recoverer)) == [destination] * len(ids)
    metric(f"zombie {destination}: recoverer spawned -> all recorded (s)", elapsed)


# -- reclaim limit ----------------------------------------------------------------------------


@pytest.mark.timeout(120)
@on_both_databases
async def test_a_reclaim_pass_takes_at_most_reclaim_limit_expired_leases(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    n, limit, period = 12, 4, 1.5
    ids, killed_at = await kill_mid_jobs(env, n)
    recoverer = env.spawn(
        *("--reclaim-limit", str(limit), "--reclaim-period", str(period)),
        name="recoverer",
        AQC_WORK_SLEEP=FAST,
    )
    await wait_for(lambda: len(reclaimed(recoverer)) >= n, 40, f"{n} reclaims", procs=(recoverer,))
    lines = reclaimed(recoverer)
    assert sorted(job for _, job, _ in lines) == sorted(ids)  # each one once
    assert {dest for _, _, dest in lines} == {"todo"}
    # A pass logs its reclaims together; passes are a reclaim period apart.
    passes: list[list[float]] = []
    for t, _, _ in sorted(lines):
        if passes and t - passes[-1][-1] < period / 3:
            passes[-1].append(t)
        else:
            passes.append([t])
    sizes = [len(p) for p in passes]
    metric("reclaim limit: jobs per pass", str(sizes))
    assert max(sizes) <= limit, sizes
    assert len(passes) >= math.ceil(n / limit), sizes
    reclaim_time = passes[-1][-1] - killed_at / 1e6
    timed(f"reclaim limit: kill -> last of {n} reclaimed (s)", reclaim_time, 30.0)
    await drain(env, n, 40, procs=(recoverer,))
    stop_all(recoverer)
    v = await env.verdict(ids)
    assert_clean(v, reruns_allowed=set(ids))
    assert all(v.starts[j] == 2 and v.completions[j] == 1 for j in ids), v.report


# -- startup recovery and its look-back ---------------------------------------------------------


@pytest.mark.timeout(90)
@on_both_databases
async def test_startup_recovery_redispatches_only_jobs_inside_the_lookback(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    recent = await env.enqueue_work(20)
    old = await env.enqueue_work(20, start=100)

    async def all_marked() -> bool:
        rows = await env.sql(
            "SELECT COUNT(*) FROM {t} WHERE queue = :q AND dispatched_at IS NOT NULL",
            q=env.queue_name,
        )
        return int(rows[0][0]) == len(recent) + len(old)

    await wait_for(all_marked, 10, "dispatch marks of every job")
    # "old": created two hours ago, outside a one-hour look-back (after the marks:
    # a batch's mark names its creation time)
    params = {f"i{k}": j for k, j in enumerate(old)}
    marks = ", ".join(f":{k}" for k in params)
    update = f"UPDATE {env.table} SET created_at = created_at - 7200000000 WHERE id IN ({marks})"
    async with env.engine.begin() as conn:
        await conn.execute(sa.text(update), params)
    client = own_redis.client()
    try:
        client.flushall()  # Redis loses every copy; SQL still has them all as todo
        sweep_period = 10.0
        started = time.monotonic()
        runner = env.spawn(
            *("--lookback", "1h", "--sweep-period", str(sweep_period)), name="runner"
        )
        await drain_ids(env, recent, runner)  # only the recent ones can run
        recovered = time.monotonic() - started
        # at startup, not at the first sweep
        timed("lookback: runner start -> recent jobs done (s)", recovered, 10.0)
        log = runner.log()
        assert "sweeper re-dispatched" not in log, log  # too slow a start to tell them apart
        assert f"startup recovery: re-dispatched {len(recent)} unfinished job(s)" in log, log
        assert re.findall(r"startup recovery: re-dispatched (\d+)", log) == [str(len(recent))]
        statuses = await env.statuses()
        assert {statuses[j] for j in recent} == {JobStatus.DONE}
        assert {statuses[j] for j in old} == {JobStatus.TODO}
        runs = env.checker.by_job()
        assert not set(runs) & set(old)
        assert not set(message_ids(client.lrange(f"{env.tag}:ready", 0, -1))) & set(old)

        # the periodic sweeper finds them (another epoch's marks, whatever their age)
        await wait_for(
            lambda: f"sweeper re-dispatched {len(old)} job(s)" in runner.log(),
            sweep_period + 15,
            "the sweeper to re-dispatch the old jobs",
            procs=(runner,),
        )
        await drain(env, len(recent) + len(old), 20, procs=(runner,))
        swept = time.monotonic() - started
        metric("lookback: runner start -> old jobs done by the sweeper (s)", swept)
        assert swept >= sweep_period, swept
    finally:
        client.close()
    stop_all(runner)
    v = await env.verdict(recent + old)
    assert_clean(v, reruns_allowed=set())


# -- periodic purge of finished jobs ---------------------------------------------------------------


@pytest.mark.timeout(90)
@on_both_databases
async def test_finished_jobs_are_purged_once_older_than_keep_results(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    keep, sweep_period = 3.0, 0.5
    runner = env.spawn(
        *("--keep-results", str(keep), "--sweep-period", str(sweep_period)), name="runner"
    )
    delayed = await env.queue.enqueue_many(
        [("work", (900 + i, 0.01), {}) for i in range(5)], options=Options(delay=3600)
    )
    long = await env.enqueue_work(3, sleep_s=60, start=800)
    first = await env.enqueue_work(10)
    await drain_ids(env, first, runner)
    # a second batch finishing later: it must outlive the first one's purge
    second = await env.enqueue_work(10, start=100)
    await drain_ids(env, second, runner)
    unfinished = {j.id for j in delayed} | set(long)

    finished_at: dict[str, int] = {}
    gone_at: dict[str, int] = {}

    async def all_purged() -> bool:
        """Note when each finished row was first seen gone; check the unfinished ones."""
        rows = await env.sql(
            "SELECT id, status, finished_at FROM {t} WHERE queue = :q", q=env.queue_name
        )
        seen_at = now_us()
        present = {r[0]: r for r in rows}
        assert unfinished <= set(present), "an unfinished job was purged"
        assert {present[j][1] for j in unfinished} <= {"todo", "running"}
        for j in first + second:
            if j in present:
                finished_at[j] = int(present[j][2])
            else:
                gone_at.setdefault(j, seen_at)
        return len(gone_at) == len(first) + len(second)

    await wait_for(
        all_purged, keep + 20, "every finished job purged", procs=(runner,), interval=0.1
    )
    ages = {j: (gone_at[j] - finished_at[j]) / 1e6 for j in gone_at}
    metric(
        "purge: age of a finished row when found gone, min/max (s)",
        f"{min(ages.values()):.2f}/{max(ages.values()):.2f}",
    )
    # never before the keep time (0.2 s: the runner's clock follows the SQL server's)
    assert min(ages.values()) >= keep - 0.2, ages
    assert max(ages.values()) <= keep + sweep_period + 10.0, ages
    purged = [int(n) for n in re.findall(r"purged (\d+) finished job\(s\)", runner.log())]
    assert sum(purged) == len(first) + len(second), purged
    remaining = await env.statuses()
    assert set(remaining) == unfinished
    assert runner.alive()


# -- repush through the CLI ---------------------------------------------------------------------


async def repush_cli(env: ChaosEnv, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "aqueue", "repush", "app:queue", *args),
        cwd=env.app_dir,
        env=env.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


@pytest.mark.timeout(120)
async def test_repush_by_id_and_by_status_failed_runs_failed_jobs_again(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    # real failed jobs: those of a killed runner, recorded failed by the reclaimer
    ids, _ = await kill_mid_jobs(env, 6, "--zombie-destination", "failed")
    recoverer = env.spawn("--zombie-destination", "failed", name="recoverer")
    await drain(env, len(ids), 30, procs=(recoverer,))
    stop_all(recoverer)
    assert set((await env.statuses()).values()) == {JobStatus.FAILED}
    ok = await env.enqueue_work(1, start=50)  # done ones: --status failed leaves them alone
    runner = env.spawn(name="runner", AQC_WORK_SLEEP=FAST)
    await drain_ids(env, ok, runner)

    code, out = await repush_cli(env, ids[0])
    assert code == 0, out
    assert f"{ids[0]}  repushed" in out and "repushed 1 of 1 job(s)" in out, out
    await drain_ids(env, ids[:1], runner)

    code, out = await repush_cli(env, "--status", "failed")
    assert code == 0, out
    assert f"repushed {len(ids) - 1} of {len(ids) - 1} job(s)" in out, out
    assert {line.split()[0] for line in out.splitlines() if line.endswith("  repushed")} == set(
        ids[1:]
    )
    await drain_ids(env, ids, runner)

    code, out = await repush_cli(env, "--status", "failed")  # nothing left to repush
    assert code == 0 and "repushed 0 of 0 job(s)" in out, out
    code, out = await repush_cli(env, "nosuchjob")
    assert code == 1 and "repushed 0 of 1 job(s)" in out, out
    stop_all(runner)

    rows = await env.rows()
    assert all(rows[j]["status"] == "done" and rows[j]["attempts"] == 1 for j in ids), rows
    runs = env.checker.by_job()
    for j in ids:  # the killed run, then the repushed one, which completed
        assert [e.completed for e in runs[j]] == [False, True], runs[j]
    assert len(runs[ok[0]]) == 1
