"""More fault injection with real runner processes (see ``harness.py``).

Each test has its own redis-server (``own_redis``), queue, table and key prefix; the
shared Redis only carries the checker's execution list and the shared MariaDB only the
test's own table (dropped afterwards). The app is ``apps/more_app.py``. The SQL faults and
the compare-and-sets they protect (outage, late finish, poison job's stalls, racing
reclaimers, lock waits) run on the shared PostgreSQL too (``@on_both_databases``); the
runner-only ones (timeouts, abandoned handler, malformed entries) on MariaDB only.

Faults covered:

- an SQL outage through a TCP proxy the test controls (cut everything, refuse new ones);
- an event loop blocked past the lease while a second runner is alive;
- handlers that never return (one swallows its cancellation) under a task timeout;
- a poison job that kills its runner each time it runs, among hundreds of good ones;
- malformed entries pushed into the ready list;
- racing reclaimers and sweeps at short periods, no faults;
- row locks held from another connection: claim and finish hit lock-wait timeouts.

Tests wait for what they check (a row, a log line, an execution event) with a deadline;
the sleeps left are the faults themselves (an outage, a lock held) or the pacing of
load generators. Measured recovery and exit times are printed and asserted against
generous bounds (the machine may be loaded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from aqueue import EnqueueOutcomeUnknownError, JobStatus, Options, Queue, StoreError

from .harness import (
    ChaosEnv,
    Pair,
    RedisServer,
    RunnerProcess,
    drain,
    now_us,
    on_both_databases,
    relay,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.mysql]

MORE_APP = Path(__file__).parent / "apps" / "more_app.py"
#: The knobs of the brief that ``RUNNER_DEFAULTS`` does not already set.
KNOBS = ("--max-stalls", "3", "--grace", "1", "--watchdog", "0.5")

Chaos = Callable[..., Awaitable[ChaosEnv]]


async def more_env(chaos: Chaos, redis_url: str) -> ChaosEnv:
    env = await chaos(redis_url)
    shutil.copy(MORE_APP, env.app_dir / "app.py")
    await env.queue.connect()  # the table exists before any runner starts (as after db init)
    return env


async def until(
    predicate: Callable[[], Any], timeout: float, what: str, *procs: RunnerProcess
) -> Any:
    """:func:`wait_for`, with the runners' log tails when it times out."""
    try:
        return await wait_for(predicate, timeout, what, procs=procs)
    except AssertionError as exc:
        tails = "\n".join(f"--- {p.name}\n{p.tail(3000)}" for p in procs)
        raise AssertionError(f"{exc}\n{tails}") from None


async def started(*procs: RunnerProcess, timeout: float = 30) -> None:
    await wait_for(
        lambda: all(p.runner_id() for p in procs), timeout, "runners started", procs=procs
    )


def events(env: ChaosEnv, job: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in env.checker.events()
        if (job is None or e["j"] == job) and (kind is None or e["k"] == kind)
    ]


def stats_of(log: str) -> dict[str, int]:
    """The counters of the runner's last ``stopped: RunnerStats(...)`` line."""
    found = re.findall(r"stopped: RunnerStats\(([^)]*)\)", log)
    assert found, log[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", found[-1])}


async def stop(*procs: RunnerProcess, timeout: float = 15) -> None:
    for p in procs:
        if p.alive():
            p.term()
    for p in procs:
        code = await asyncio.to_thread(p.finish, timeout)
        assert code == 0, f"{p.name} exited with {code}:\n{p.tail()}"


def error_of(row_error: str | None) -> dict[str, str]:
    assert row_error, "no error recorded"
    data: dict[str, str] = json.loads(row_error)
    return data


async def job_row(env: ChaosEnv, job_id: str) -> dict[str, Any]:
    rows = await env.sql(
        "SELECT status, attempts, stalls, result, error, lease_token FROM {t} WHERE id = :i",
        i=job_id,
    )
    assert rows, f"no job {job_id}"
    keys = ("status", "attempts", "stalls", "result", "error", "lease_token")
    return dict(zip(keys, rows[0], strict=True))


# -- SQL outage through a proxy ------------------------------------------------------------


class SqlProxy:
    """A TCP proxy in front of the SQL server of ``database_url``. :meth:`cut` aborts
    every connection and stops listening (new connections are refused); :meth:`restore`
    listens again on the same port."""

    def __init__(self, database_url: str) -> None:
        self._url = sa.make_url(database_url)
        default_port = 5432 if self._url.get_backend_name() == "postgresql" else 3306
        self.target = (self._url.host or "127.0.0.1", self._url.port or default_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.accepted = 0
        self.down = False
        self._conns: set[Pair] = set()

    @property
    def url(self) -> str:
        return self._url.set(port=self.port).render_as_string(hide_password=False)

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await relay(cr, cw, self.target, lambda: self.down, self._conns)

    async def cut(self) -> int:
        """Refuse new connections and abort the open ones; returns how many were cut."""
        assert self.server is not None
        self.down = True
        self.server.close()
        await self.server.wait_closed()
        self.server = None
        n = len(self._conns)
        for pair in list(self._conns):
            for w in pair:
                w.transport.abort()
        return n

    async def restore(self) -> None:
        self.down = False
        await self.start()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for pair in list(self._conns):
            for w in pair:
                w.transport.abort()
        # each connection's handler forgets it once its pumps have seen the abort
        await wait_for(lambda: not self._conns, 5, "the proxy's connections to close")


@pytest.mark.timeout(60)
@on_both_databases
async def test_sql_outage_enqueue_fails_clearly_runner_pauses_and_resumes(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    proxy = SqlProxy(env.database_url)
    await proxy.start()
    producer = Queue(
        env.queue_name,
        redis_url=own_redis.url,
        database_url=proxy.url,
        table=env.table,
        key_prefix=env.prefix,
    )
    try:
        runner = env.spawn("-c", "10", *KNOBS, name="runner", AQM_DATABASE_URL=proxy.url)
        await started(runner)

        ok: list[str] = []
        ok_spans: list[tuple[float, float]] = []  # (called, returned)
        unknown: list[str] = []
        refused: list[tuple[float, StoreError]] = []
        other: list[BaseException] = []
        stop_producing = asyncio.Event()
        counter = iter(range(10**6))

        async def produce() -> None:
            while not stop_producing.is_set():
                t = time.monotonic()
                try:
                    job = await producer.enqueue("work", next(counter), 0.02)
                except EnqueueOutcomeUnknownError as exc:
                    unknown.append(exc.job_id)
                except StoreError as exc:
                    refused.append((t, exc))
                except BaseException as exc:
                    other.append(exc)
                else:
                    ok.append(job.id)
                    ok_spans.append((t, time.monotonic()))
                await asyncio.sleep(0.01)  # the producers' pace (load, not a wait)

        producers = [asyncio.ensure_future(produce()) for _ in range(3)]
        await until(lambda: len(events(env, kind="e")) >= 50, 20, "jobs flowing", runner)
        cut_us = now_us()
        cut = await proxy.cut()
        t_cut = time.monotonic()
        await asyncio.sleep(3.0)  # the outage
        restore_us = now_us()
        t_restore = time.monotonic()
        await proxy.restore()

        def stored_after_restore() -> int:
            return sum(1 for a, _ in ok_spans if a >= t_restore)

        # the producers store jobs again (not only the first one: the pool recovered)
        await until(lambda: stored_after_restore() >= 20, 20, "enqueues after restore", runner)
        first_ok_s = min(b for a, b in ok_spans if a >= t_restore) - t_restore
        stop_producing.set()
        await asyncio.gather(*producers)

        assert not other, other
        during = [e for t, e in refused if t_cut <= t <= t_restore]
        assert during, "no enqueue failed while the database was down"
        # Refused connections are a definite "not stored"; a connection cut mid-statement
        # is "outcome unknown" (the caller gets the job id to enqueue again).
        for exc in during:
            assert "enqueue failed" in str(exc), exc
        # No enqueue called and returned while SQL was unreachable reported success.
        ok_during = [(a, b) for a, b in ok_spans if t_cut <= a and b <= t_restore]
        assert not ok_during, f"{len(ok_during)} enqueue(s) succeeded while SQL was down"
        # Resolve the unknown outcomes the documented way: enqueue again with the id.
        for job_id in unknown:
            again = await env.queue.options(job_id=job_id).enqueue("work", -1, 0.0)
            assert again.id == job_id
        expected = ok + unknown
        drained = await drain(env, len(expected), 40, procs=(runner,))
        statuses = await env.statuses()
        # Nothing was stored for an enqueue that reported a definite failure.
        assert set(statuses) == set(expected), set(statuses) ^ set(expected)
        verdict = await env.verdict(expected)
        c = verdict.counts()
        assert c["lost"] == 0 and c["stuck"] == 0, verdict.report
        assert c["concurrent"] == 0 and c["unexpected"] == 0, verdict.report
        # At-least-once: only jobs whose first run overlapped the outage may run again.
        for j in verdict.reruns:
            first = min(e["ts"] for e in events(env, j, "s"))
            assert first < restore_us, (j, first, cut_us, restore_us)

        starts_after = sorted(e["ts"] for e in events(env, kind="s") if e["ts"] > restore_us)
        assert starts_after, "the runner did not resume"
        resume_s = (starts_after[0] - restore_us) / 1e6
        final_s = time.monotonic() - t_restore
        assert resume_s <= 15.0, resume_s  # the runner resumes claiming
        assert first_ok_s <= 10.0, first_ok_s  # producers store again
        assert final_s <= 45.0, final_s
        log = runner.log()
        assert runner.alive(), runner.tail()
        assert "Traceback" not in log, runner.tail()
        print(
            f"\n[sql outage] cut {cut} connection(s); {len(during)} enqueue(s) refused while "
            f"down (e.g. {during[0]!s:.150}); {len(unknown)} outcome(s) unknown; "
            f"{len(ok)} stored; first enqueue stored {first_ok_s:.2f}s and first start "
            f"{resume_s:.2f}s after restore; all final {final_s:.2f}s after restore "
            f"(drain {drained:.2f}s); "
            f"reruns {len(verdict.reruns)}, duplicated {len(verdict.duplicated)}"
        )
        await stop(runner)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.close(), 10)
        await proxy.close()


# -- blocked event loop --------------------------------------------------------------------


@pytest.mark.timeout(60)
@on_both_databases
async def test_blocked_loop_job_is_reclaimed_and_the_late_finish_rejected(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    a = env.spawn("-c", "4", *KNOBS, name="a")
    b = env.spawn("-c", "4", *KNOBS, name="b")
    await started(a, b)
    lease = 2.0
    job = (await env.queue.enqueue("block_once", lease * 2.5)).id
    first = (await until(lambda: events(env, job, "s"), 10, "the blocker to start", a, b))[0]
    blocked, rescuer = (a, b) if first["p"] == a.pid else (b, a)
    assert first["p"] == blocked.pid
    # Other jobs keep flowing meanwhile (through the runner that is not blocked).
    work = await env.enqueue_work(20, 0.02)

    async def final() -> bool:
        return bool((await job_row(env, job))["status"] == "done")

    await until(final, 20, "the blocked job to be done elsewhere", a, b)
    # The blocked runner wakes up, completes its (late) run and tries to record it.
    await until(lambda: len(events(env, job, "e")) == 2, 15, "the late completion", a, b)
    await drain(env, len(work) + 1, 20, procs=(a, b))
    # the late finish reached SQL and was decided
    await until(
        lambda: f"late finish of job {job} rejected" in blocked.log(), 15, "the rejection", a, b
    )
    row = await job_row(env, job)
    starts = events(env, job, "s")
    assert [e["p"] for e in starts] == [blocked.pid, rescuer.pid], starts
    assert row["status"] == "done", row
    assert json.loads(row["result"]) == rescuer.pid, row  # the rescuer's outcome, once
    assert row["stalls"] == 1 and row["attempts"] == 1, row
    assert starts[1]["t"] != starts[0]["t"]  # a new lease token
    verdict = await env.verdict([*work, job])
    assert verdict.counts()["lost"] == 0 and verdict.counts()["stuck"] == 0, verdict.report
    assert verdict.duplicated in ([], [job]), verdict.report  # only the blocked job
    await stop(a, b)
    env.checker._r.delete(f"{env.checker.key}:blocked:{job}")
    log = blocked.log()
    assert "event loop blocked" in log, blocked.tail()
    assert f"late finish of job {job} rejected" in log, blocked.tail()
    assert stats_of(log)["finishes_rejected"] == 1, stats_of(log)
    assert stats_of(rescuer.log())["finishes_rejected"] == 0
    rescued_s = (starts[1]["ts"] - starts[0]["ts"]) / 1e6
    print(
        f"\n[blocked loop] rescued {rescued_s:.2f}s after the loop blocked (lease {lease}s); "
        "late finish rejected"
    )
    # the lease runs out, then a reclaim pass and a claim by the other runner
    assert rescued_s <= lease + 10.0, rescued_s


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_timeouts_free_the_slot_even_when_cancellation_is_swallowed(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    runner = env.spawn("-c", "1", *KNOBS, name="runner", AQM_TIMEOUT="1")
    await started(runner)
    t0 = time.monotonic()
    # The producer knows the tasks by name only: the attempts come with the job.
    hang = (await env.queue.options(retries=1).enqueue("hang")).id
    stubborn = (await env.queue.options(retries=1).enqueue("stubborn")).id
    work = await env.enqueue_work(10, 0.02)

    async def final(job_id: str) -> bool:
        return (await job_row(env, job_id))["status"] in ("done", "failed")

    await until(lambda: final(hang), 20, "hang to fail", runner)
    await until(lambda: final(stubborn), 20, "stubborn to fail", runner)
    t_failed = time.monotonic() - t0
    for job_id in (hang, stubborn):
        row = await job_row(env, job_id)
        err = error_of(row["error"])
        assert row["status"] == "failed", row
        assert row["attempts"] == 2, row  # retried once, then failed
        assert err["type"] == "TimeoutError", err
        assert "timed out after 1" in err["message"], err
    # The only slot is free again: more jobs run at once.
    t1 = time.monotonic()
    more = await env.enqueue_work(20, 0.0, start=100)
    await drain(env, len(work) + len(more) + 2, 15, procs=(runner,))
    t_more = time.monotonic() - t1
    assert t_failed <= 20.0, t_failed  # 2 attempts of 1 s each, plus the retry's delay
    assert t_more <= 10.0, t_more
    verdict = await env.verdict([*work, *more])
    c = verdict.counts()
    assert c["lost"] == c["stuck"] == c["duplicated"] == 0, verdict.report
    assert set(verdict.unexpected) == {hang, stubborn}, verdict.report
    assert set(verdict.reruns) == {hang, stubborn}, verdict.report
    # the abandoned first run of ``stubborn`` never ended: it overlaps its second run
    assert {j for j, _, _ in verdict.concurrent} <= {stubborn}, verdict.report
    log = runner.log()
    assert log.count("ignored its cancellation") == 2, runner.tail()
    print(
        f"\n[timeouts] both timed-out jobs failed {t_failed:.2f}s after enqueue (2 attempts each, "
        f"timeout 1s); 20 more jobs took {t_more:.2f}s on the freed slot"
    )


@pytest.mark.timeout(40)
async def test_sigterm_exits_although_an_abandoned_handler_lives_on(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    runner = env.spawn("-c", "1", *KNOBS, name="runner", AQM_TIMEOUT="0.5")
    await started(runner)
    stubborn = (await env.queue.options(retries=0).enqueue("stubborn")).id

    async def failed() -> bool:
        return bool((await job_row(env, stubborn))["status"] == "failed")

    await until(failed, 10, "stubborn to fail", runner)
    await until(lambda: "ignored its cancellation" in runner.log(), 5, "the abandon", runner)
    t0 = time.monotonic()
    await stop(runner, timeout=6)  # --grace 1
    exit_s = time.monotonic() - t0
    print(f"\n[abandoned handler] SIGTERM exit {exit_s:.2f}s with an abandoned handler")
    assert exit_s <= 6.0, exit_s


# -- poison job ----------------------------------------------------------------------------


def _child_pids(log: str) -> list[int]:
    return [int(p) for p in re.findall(r"started runner process \d+ \(pid (\d+)\)", log)]


def _kill_children(sup: RunnerProcess) -> None:
    for pid in _child_pids(sup.log()):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"aqueue" in cmdline:
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(90)
@on_both_databases
async def test_poison_job_fails_after_the_stall_limit_and_others_flow(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    sup = env.spawn("--processes", "2", "-c", "10", *KNOBS, name="supervisor")
    try:
        await until(lambda: len(_child_pids(sup.log())) >= 2, 20, "2 runners", sup)
        work = await env.enqueue_work(100, 0.02)
        poison = (await env.queue.enqueue("poison")).id
        work += await env.enqueue_work(100, 0.02, start=100)
        t0 = time.monotonic()

        async def poison_final() -> bool:
            return (await job_row(env, poison))["status"] in ("done", "failed", "cancelled")

        # Keep the good jobs coming while the poison job kills runners.
        n = 200
        poison_done = asyncio.Event()

        async def feed() -> None:
            nonlocal work, n
            while n < 600 and not poison_done.is_set():
                work += await env.enqueue_work(20, 0.02, start=n)
                n += 20
                await asyncio.sleep(0.5)  # the feed's pace (load, not a wait)

        feeder = asyncio.ensure_future(feed())
        try:
            await until(poison_final, 60, "the poison job to be final", sup)
        finally:
            poison_done.set()
            await feeder
        t_poison = time.monotonic() - t0
        assert t_poison <= 60.0, t_poison  # three runner deaths, each found by a reclaim
        work += await env.enqueue_work(50, 0.02, start=n)
        await drain(env, len(work) + 1, 40, procs=(sup,))

        row = await job_row(env, poison)
        err = error_of(row["error"])
        assert row["status"] == "failed", row
        assert err["type"] == "RunnerDied", err
        assert "runner died" in err["message"] and "limit 3" in err["message"], err
        runs = events(env, poison, "s")
        dead = {e["p"]: e["ts"] + 1 for e in runs}  # each run killed its process at once
        assert len(dead) == len(runs), runs
        statuses = await env.statuses()
        verdict = env.checker.classify(
            [*work, poison], statuses, deaths=dead, want={poison: JobStatus.FAILED}
        )
        by_job = env.checker.by_job()
        innocent_reruns = [j for j in verdict.reruns if j != poison]
        deaths_logged = sup.log().count("exited with 1; restarting")
        innocents_failed = [j for j in work if statuses.get(j) is not JobStatus.DONE]
        problems = []
        if len(runs) != 3 or row["stalls"] != 3 or deaths_logged != 3:
            problems.append(
                f"the poison job ran {len(runs)} times and killed {deaths_logged} runners "
                f"(stall limit 3; stalls recorded {row['stalls']})"
            )
        if innocents_failed:
            errors = Counter(
                error_of(r["error"])["message"][:60]
                for r in [await job_row(env, j) for j in innocents_failed[:20]]
            )
            problems.append(f"{len(innocents_failed)} innocent job(s) not done: {errors}")
        c = verdict.counts()
        if c["lost"] or c["stuck"] or c["concurrent"] or c["unexpected"]:
            problems.append(verdict.report)
        # Only innocents in flight next to a poison run (so killed with it, finished or
        # not) may run again.
        wrong = [j for j in innocent_reruns if by_job[j][0].pid not in dead]
        first_death, last_death = min(dead.values()), max(dead.values())
        flowed = sum(1 for e in events(env, kind="e") if first_death < e["ts"] < last_death)
        if flowed == 0:
            problems.append("no good job completed while the poison job was killing runners")
        if wrong or len(innocent_reruns) > 20:  # concurrency + prefetch
            problems.append(f"innocents re-run: {len(innocent_reruns)}; unexplained {wrong}")
        assert not problems, "\n".join(problems)
        print(
            f"\n[poison job] poison job failed after 3 runner deaths in {t_poison:.2f}s; "
            f"{len(work)} good jobs done ({flowed} between the first and the last death); "
            f"innocents re-run: {len(innocent_reruns)}"
        )
        sup.term()
        code = await asyncio.to_thread(sup.finish, 20)
        assert code == 0, sup.tail()
    finally:
        _kill_children(sup)


# -- malformed messages --------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_malformed_ready_entries_are_dropped_and_logged(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    good = await env.enqueue_work(30, 0.01)
    # Real jobs, not due for an hour: a malformed message naming them fails them.
    v_version = (await env.queue.options(delay=3600).enqueue("work", 1, 0.0)).id
    v_fields = (await env.queue.options(delay=3600).enqueue("work", 2, 0.0)).id
    v_args = (await env.queue.options(delay=3600).enqueue("work", 3, 0.0)).id
    # A real job of a task no runner knows.
    unknown_task = (await env.queue.enqueue("no_such_task", 1)).id
    ghost = str(uuid.uuid4())
    malformed = [
        b"not json at all",
        b"\xff\xfe\x00\x01 binary",
        b"",
        b"[1, 2, 3]",
        b"null",
        b'{"v": 1}',
        json.dumps({"v": 1, "id": v_fields}).encode(),
        json.dumps(
            {"v": 1, "id": v_args, "t": "work", "n": 0, "m": 1, "p": {"a": "x", "k": {}}}
        ).encode(),
    ]
    # A message of a newer format (a rolling deploy): left for a newer runner, not failed.
    newer = json.dumps(
        {"v": 99, "id": v_version, "t": "work", "n": 0, "m": 1, "p": {"a": [1], "k": {}}}
    ).encode()
    # Well-formed, but no such job in SQL (one of them for an unknown task): dropped.
    orphans = [
        json.dumps(
            {"v": 1, "id": ghost, "t": "work", "n": 0, "m": 1, "p": {"a": [1, 0], "k": {}}}
        ).encode(),
        json.dumps(
            {"v": 1, "id": str(uuid.uuid4()), "t": "nope", "n": 0, "m": 1, "p": {"a": [], "k": {}}}
        ).encode(),
    ]
    r = own_redis.client()
    try:
        ready = f"{env.tag}:ready"
        for i, raw in enumerate([*malformed, newer, *orphans]):
            # interleave with the good messages
            pivot = r.lindex(ready, i * 3)
            assert pivot is not None
            r.linsert(ready, "BEFORE", pivot, raw)  # type: ignore[arg-type]
        runner = env.spawn("-c", "4", *KNOBS, name="runner")
        await started(runner)
        delayed = f"{env.tag}:delayed"
        await wait_for(lambda: r.zscore(delayed, newer) is not None, 20, "the newer message kept")
        assert (await job_row(env, v_version))["status"] == "todo"
        assert await env.queue.cancel(v_version)  # no newer runner will come in this test
        await drain(env, len(good) + 1, 20, procs=(runner,))
        verdict = await env.verdict(good)
        assert verdict.counts() == dict.fromkeys(verdict.counts(), 0), verdict.report

        rows = {j: await job_row(env, j) for j in (v_version, v_fields, v_args, unknown_task)}
        assert rows[v_version]["status"] == "cancelled", rows[v_version]
        for j, needle in (
            (v_fields, "malformed message"),
            (v_args, "malformed message"),
        ):
            err = error_of(rows[j]["error"])
            assert rows[j]["status"] == "failed", rows[j]
            assert err["type"] == "SerializationError" and needle in err["message"], err
        err = error_of(rows[unknown_task]["error"])
        assert rows[unknown_task]["status"] == "failed", rows[unknown_task]
        assert err["type"] == "UnknownTaskError" and "no_such_task" in err["message"], err
        assert not await env.sql("SELECT id FROM {t} WHERE id = :i", i=ghost)

        await wait_for(lambda: r.llen(ready) == 0, 5, "an empty ready list")
        working = [k for k in r.scan_iter(match=f"{env.tag}:working:*") if r.llen(k)]
        assert not working, working
        assert runner.alive()
        await stop(runner)
        log = runner.log()
        assert log.count("dropping malformed message") == len(malformed), runner.tail()
        assert "Traceback" not in log, runner.tail()
        st = stats_of(log)
        assert st["malformed"] == len(malformed), st
        assert st["claims_lost"] == len(orphans), st
        print(
            f"\n[malformed] {len(malformed)} malformed + {len(orphans)} orphan messages dropped; "
            f"2 named jobs failed with the reason; {len(good)} good jobs done"
        )
    finally:
        r.close()


# -- racing reclaimers and sweeps ----------------------------------------------------------


@pytest.mark.timeout(90)
@on_both_databases
async def test_racing_reclaimers_and_sweeps_no_duplicates(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    race = ["--lease", "2", "--reclaim-period", "0.2", "--sweep-period", "0.5"]
    race += ["--sweep-grace", "0.5"]
    runners = [env.spawn("-c", "20", *KNOBS, *race, name=f"r{i}") for i in range(3)]
    await started(*runners)
    t0 = time.monotonic()
    be = await env.queue._backend()

    def rows(n: int, start: int, sleep_s: float) -> list[Any]:
        return [env.queue._new_job("work", (start + i, sleep_s), {}, Options()) for i in range(n)]

    # Jobs that outlive the lease: only renewals keep the racing reclaimers off them.
    long = await env.enqueue_work(30, 2.5)
    ids = list(long)
    ids += await env.enqueue_work(800, 0.02, start=1000)
    # Stored and pushed, but never marked dispatched: the sweepers push them again while
    # the first messages are being claimed (duplicate messages, one claim wins).
    pushed = rows(400, 2000, 0.02)
    assert await be.store.insert_jobs(pushed, now_us()) == [j.id for j in pushed]
    await be.broker.dispatch([j.message() for j in pushed], [])
    ids += [j.id for j in pushed]
    # Stored but never pushed (a producer that died after its INSERT): only the sweepers
    # can dispatch these.
    lost = rows(400, 3000, 0.02)
    assert await be.store.insert_jobs(lost, now_us()) == [j.id for j in lost]
    ids += [j.id for j in lost]
    for k in range(3):
        await asyncio.sleep(0.3)  # enqueue while the sweeps race (load, not a wait)
        ids += await env.enqueue_work(110 if k < 2 else 150, 0.02, start=4000 + 200 * k)
    assert len(ids) == len(set(ids)) == 2000
    drained = await drain(env, len(ids), 60, procs=runners)
    elapsed = time.monotonic() - t0
    assert elapsed <= 60.0, elapsed
    verdict = await env.verdict(ids)
    assert verdict.counts() == dict.fromkeys(verdict.counts(), 0), verdict.report
    rows_now = await env.rows()
    assert all(rows_now[j]["attempts"] == 1 and rows_now[j]["stalls"] == 0 for j in ids)
    await stop(*runners)
    logs = [p.log() for p in runners]
    stats = [stats_of(log) for log in logs]
    assert sum(s["done"] for s in stats) == 2000, stats
    assert sum(s["finishes_rejected"] for s in stats) == 0, stats
    reclaims = [line for log in logs for line in log.splitlines() if "reclaimed job" in line]
    assert not reclaims, "\n".join(reclaims[:10])  # no lease ever expired
    assert not events(env, kind="x"), "a handler was interrupted"
    # No renewal racing a finish took the row already 'done' for a revocation.
    revoked = [line for log in logs for line in log.splitlines() if "was revoked" in line]
    assert not revoked, "\n".join(revoked[:10])
    # A sweep pass dispatched them: the periodic sweeper's, or startup recovery's (which
    # looks again a second or so after a runner starts: that one often finds them first).
    sweeps = r"(?:sweeper|startup recovery:) re-dispatched (\d+)"
    swept = sum(int(n) for log in logs for n in re.findall(sweeps, log))
    assert swept >= len(lost), swept
    print(
        f"\n[racing reclaimers] 2000 jobs (30 longer than the lease), 3 runners, reclaim "
        f"0.2s / sweep 0.5s: all done once in {elapsed:.2f}s (drain {drained:.2f}s); "
        f"swept {swept}; claims lost {sum(s['claims_lost'] for s in stats)}"
    )


# -- lock-wait timeouts --------------------------------------------------------------------


#: A statement that gave up waiting on a row lock, as the runner logs it: MySQL's error
#: 1205, PostgreSQL's 55P03 (lock_timeout).
LOCK_WAIT_ERROR = "(1205|Lock wait timeout|canceling statement due to lock timeout)"


class RowLock:
    """``SELECT ... FOR UPDATE`` in an open transaction on a connection of its own."""

    def __init__(self, env: ChaosEnv, ids: list[str]) -> None:
        self.env = env
        self.ids = ids
        self._conn: AsyncConnection | None = None
        self.engine = create_async_engine(env.database_url, poolclass=NullPool)

    async def __aenter__(self) -> RowLock:
        self._conn = await self.engine.connect()
        query = sa.text(f"SELECT id FROM {self.env.table} WHERE id IN :ids FOR UPDATE")
        query = query.bindparams(sa.bindparam("ids", expanding=True))
        rows = (await self._conn.execute(query, {"ids": self.ids})).fetchall()
        assert len(rows) == len(self.ids)
        return self

    async def release(self) -> None:
        if self._conn is not None:
            await self._conn.rollback()
            await self._conn.close()
            self._conn = None

    async def __aexit__(self, *exc: object) -> None:
        await self.release()
        await self.engine.dispose()


@pytest.mark.timeout(60)
@on_both_databases
async def test_lock_wait_timeouts_on_claim_and_finish_are_retried(
    chaos: Chaos, own_redis: RedisServer
) -> None:
    env = await more_env(chaos, own_redis.url)
    # A lease longer than the lock is held: renewals wait on the same rows.
    runner = env.spawn(
        "-c", "20", *KNOBS, "--lease", "6", "--log-level", "debug", name="r", AQM_LOCK_WAIT="1"
    )
    await started(runner)
    hold = 3.0

    # Claim: the rows are locked before the messages become due (after the producer's
    # dispatch marks).
    delay = 3.0
    due = time.monotonic() + delay
    ids = [
        j.id
        for j in await env.queue.options(delay=delay).enqueue_many(
            [("work", (i, 0.01), {}) for i in range(40)]
        )
    ]

    async def all_marked() -> bool:  # the producer marks them dispatched first
        rows = await env.sql(
            "SELECT COUNT(*) FROM {t} WHERE queue = :q AND dispatched_at IS NOT NULL",
            q=env.queue_name,
        )
        return int(rows[0][0]) == len(ids)

    await until(all_marked, 10, "the 40 jobs marked dispatched", runner)
    async with RowLock(env, ids[::2]) as lock:
        t_locked = time.monotonic()
        assert t_locked < due, "the marks came too late for this test"
        await asyncio.sleep(due - t_locked + hold)  # the rows stay locked: the fault
        assert not events(env, ids[0]), "a locked job ran"
        await lock.release()
        t_claim_release = time.monotonic()
    await drain(env, len(ids), 15, procs=(runner,))
    claim_recovery = time.monotonic() - t_claim_release
    log = runner.log()
    assert re.search(rf"claiming jobs: retrying after .*{LOCK_WAIT_ERROR}", log), log[-3000:]

    # Finish: the jobs are running when their rows get locked.
    slow = await env.enqueue_work(10, 1.5, start=100)

    async def all_running() -> bool:
        return len({e["j"] for e in events(env, kind="s")} & set(slow)) == 10

    await until(all_running, 10, "10 running jobs", runner)
    async with RowLock(env, slow) as lock:
        await asyncio.sleep(hold)  # the rows stay locked: the fault
        await lock.release()
        t_finish_release = time.monotonic()
    await drain(env, len(ids) + len(slow), 15, procs=(runner,))
    finish_recovery = time.monotonic() - t_finish_release
    # the retries after a lock-wait timeout (1 s) take the rows soon after the release
    assert claim_recovery <= 10.0 and finish_recovery <= 10.0, (claim_recovery, finish_recovery)
    log = runner.log()
    assert re.search(rf"recording finished jobs: retrying after .*{LOCK_WAIT_ERROR}", log)

    verdict = await env.verdict([*ids, *slow])
    assert verdict.counts() == dict.fromkeys(verdict.counts(), 0), verdict.report
    await stop(runner)
    st = stats_of(runner.log())
    assert st["done"] == 50 and st["finishes_rejected"] == 0, st
    print(
        f"\n[lock waits] claims waited on locked rows {t_claim_release - t_locked:.1f}s, all done "
        f"{claim_recovery:.2f}s after release; finishes of 10 locked running jobs done "
        f"{finish_recovery:.2f}s after release; lock-wait retries in the log: "
        f"{len(re.findall('retrying after', log))}"
    )
