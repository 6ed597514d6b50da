"""Side-by-side benchmark of aqueue against arq, SAQ, taskiq and streaQ.

    python benchmarks/run.py [--jobs N] [--repeats 3] [--only aqueue,arq,...]
                             [--workloads W1,W2,W3,W4] [--quick]

Every system runs the same jobs through its public API on the same Redis (each in its own
DB number); each worker is a separate process started with the system's own CLI, the
producer is another process. Workloads (see docs/benchmarks.md for the method):

- W1 enqueue: N jobs from 100 concurrent awaiting producers, and through the system's
  batch API where it has one; for aqueue on MariaDB and PostgreSQL also each job inside
  an application transaction that inserts a row of its own (``connection=``).
- W2 drain: N queued no-op jobs, one worker process at concurrency 100; from the worker's
  start (its startup hook) to the last completion. For aqueue the clock stops only once
  the last row is ``done`` in SQL; on MariaDB the statements per job are counted too, on
  PostgreSQL the transactions per job (``pg_stat_database``).
- W3 sleep: as W2 with jobs of ``asyncio.sleep(0.01)``, beside a bare asyncio loop
  running the same sleeps at the same concurrency (the no-overhead ceiling).
- W4 latency: a fixed rate (500 jobs/s for 10 s) into a running worker; enqueue->start
  p50/p95/p99 with the clock read before ``enqueue()``.

Prints one table (medians of the repeats), writes ``benchmarks/results/latest.json`` and
regenerates ``docs/benchmarks.md``. ``--quick`` (N=200, one repeat, W4 at 100 jobs/s for
2 s, W5 only noop and 10 KB) is a smoke test: it writes ``benchmarks/results/quick.json``
and leaves the doc alone.
Run it under ``nice -n 19`` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _info
import _pg
import _report
from _systems import (
    BENCH_DIR,
    SYSTEMS,
    Namespace,
    Settings,
    System,
    check_available,
    select,
)
from redis.asyncio import Redis

WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
W5_QUICK = ("noop", "10 KB")  # each variant starts two workers: the smoke test keeps two
W5_VARIANTS = (  # label, job kind, jobs, payload bytes
    ("noop", "noop", 50_000, 0),
    ("100 B", "blob", 50_000, 100),
    ("10 KB", "blob", 50_000, 10_000),
    ("100 KB", "blob", 5_000, 100_000),
)
SQL_COUNTERS = (
    "Com_insert",
    "Com_update",
    "Com_select",
    "Com_delete",
    "Com_commit",
    "Com_rollback",
    "Com_begin",
    "Com_set_option",
)
SQL_ALL = (*SQL_COUNTERS, "Questions")
READY_TIMEOUT = 60.0


class BenchError(Exception):
    """One measurement failed; the rest of the run goes on."""


@dataclass
class WorkerHandle:
    proc: asyncio.subprocess.Process
    spawned_at: float
    log: Path
    ready: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: float | None = None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def peak_rss_mb(root: int) -> float | None:
    """The largest peak resident set (VmHWM) among the worker's process tree, in MiB: the
    process running the jobs (taskiq's CLI runs them in a child process)."""
    peaks = []
    for pid in _tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return round(max(peaks), 1) if peaks else None


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the processes, in seconds (/proc/<pid>/stat)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(f"/proc/{pid}/stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pids_where(match: Callable[[str, str], bool]) -> list[int]:
    """Processes whose (comm, cmdline) ``match``."""
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            comm = (d / "comm").read_text().strip()
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if match(comm, cmdline):
                out.append(int(d.name))
    return out


def done_count(q: Any) -> Callable[[], Awaitable[int]]:
    """The number of rows ``done`` in aqueue's queue ``q`` (one SELECT: its job counts)."""
    from aqueue import JobStatus

    async def count() -> int:
        return int((await q.counts()).get(JobStatus.DONE, 0))

    return count


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def redis_per_job(c0: dict[str, int], c1: dict[str, int], n: int) -> dict[str, Any]:
    """Redis commands per job from the worker's start to the last job, less what the
    benchmark itself sends: each job's INCR (and for the run its one SET NX of the first
    start and one RPUSH of the end) and the harness's BLPOP waits and INFO calls.
    Commands run inside Lua scripts and functions count as commands too. The counters are
    server-wide: other clients of the server add to them."""
    delta = {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] != c0.get(k, 0)}
    # (the job bodies count with INCR; the harness's redis-py client sends INCRBY)
    counted = "incr" if delta.get("incr", 0) >= n else "incrby"
    for cmd, ours in ((counted, n), ("set", 1), ("rpush", 1), ("info", 1)):
        if cmd in delta:
            delta[cmd] -= ours
    delta.pop("blpop", None)  # the harness waiting; no system under test blocks in BLPOP
    delta = {k: v for k, v in delta.items() if v > 0}
    scripts = sum(v for k, v in delta.items() if k in ("evalsha", "eval", "fcall", "fcall_ro"))
    return {
        "commands_per_job": sum(delta.values()) / n,
        "script_calls_per_job": scripts / n,
        "top_per_job": {k: v / n for k, v in sorted(delta.items(), key=lambda kv: -kv[1])[:8]},
    }


class Bench:
    def __init__(self, a: argparse.Namespace, workdir: Path) -> None:
        self.a = a
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir()
        self.settings = Settings(
            redis=a.redis,
            harness_db=a.harness_db,
            first_db=a.first_db,
            database=a.database,
            postgres=a.postgres,
            home=workdir / "home",
            concurrency=a.concurrency,
        )
        self.r = Redis.from_url(self.settings.redis_url(a.harness_db))
        self.mysql: Any = None
        self.postgres: Any = None
        self.postmaster: int | None = None
        self.sqlite: Any = None
        self.errors = 0

    # -- processes ---------------------------------------------------------------------

    async def producer(
        self, ns: Namespace, mode: str, kind: str, jobs: int = 0, payload: int = 0
    ) -> dict[str, Any]:
        a = self.a
        argv = [
            sys.executable,
            str(BENCH_DIR / "producer.py"),
            ns.system.module,
            mode,
            kind,
            str(jobs),
            f"--concurrency={a.concurrency}",
            f"--batch-size={a.batch_size}",
            f"--rate={a.rate}",
            f"--duration={a.duration}",
            f"--payload={payload}",
            f"--blob={a.w5_blob}",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=BENCH_DIR,
            env=ns.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        timeout = 120 + jobs / 50 + (a.duration if mode == "rate" else 0)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BenchError(f"producer ({mode}) timed out after {timeout:.0f}s") from None
        if proc.returncode:
            tail = "\n".join(err.decode(errors="replace").splitlines()[-8:])
            raise BenchError(f"producer ({mode}) exited {proc.returncode}:\n{tail}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    async def wait_key(
        self, ns: Namespace, name: str, timeout: float, h: WorkerHandle | None
    ) -> bytes:
        """BLPOP ``bench:<run>:<name>``, failing early if the worker exits."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"timed out after {timeout:.0f}s waiting for {name!r}")
            got = await self.r.blpop([f"bench:{ns.run}:{name}"], timeout=min(0.5, left))
            if got:
                return bytes(got[1])
            if h is not None and h.proc.returncode is not None:
                raise BenchError(
                    f"worker exited with {h.proc.returncode} while waiting for {name!r}:\n"
                    + _tail(h.log)
                )

    @contextlib.asynccontextmanager
    async def worker(self, ns: Namespace, label: str) -> AsyncIterator[WorkerHandle]:
        log = self.logs / f"{ns.system.name}-{label}-{ns.run}.log"
        argv = ns.system.worker_argv(self.a.concurrency)
        with log.open("wb") as f:
            spawned = time.time()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=BENCH_DIR,
                env=ns.env(),
                stdout=f,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        h = WorkerHandle(proc, spawned, log)
        try:
            h.ready = json.loads(await self.wait_key(ns, "ready", READY_TIMEOUT, h))
            yield h
            h.peak_rss_mb = peak_rss_mb(proc.pid)
        finally:
            await self.stop(h)

    async def stop(self, h: WorkerHandle) -> None:
        if h.proc.returncode is None:
            h.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(h.proc.wait(), 30)
            except TimeoutError:
                print(f"  worker {h.proc.pid} ignored SIGTERM for 30 s: killing it", flush=True)
        # whatever the worker left in its own process group (its children)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(h.proc.pid, signal.SIGKILL)
        await h.proc.wait()

    # -- SQL ---------------------------------------------------------------------------

    async def sql_status(self) -> dict[str, int]:
        """Every ``Com_*`` counter and ``Questions``, server-wide."""
        async with self.mysql.connect() as conn:
            rows = await conn.exec_driver_sql(
                # %% and not %: the driver formats the statement even without parameters
                "SHOW GLOBAL STATUS WHERE Variable_name LIKE 'Com%%' OR Variable_name = 'Questions'"
            )
            # (also matches Compression = OFF and the like)
            return {str(k): int(v) for k, v in rows.fetchall() if str(v).isdigit()}

    async def redis_calls(self) -> dict[str, int]:
        """Calls per command on the shared Redis server (``INFO commandstats``)."""
        stats = await self.r.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    async def wait_sql_done(
        self, done: Callable[[], Awaitable[int]], n: int, timeout: float
    ) -> tuple[float, int]:
        """Poll ``done()`` (one statement: rows ``done``) until it reaches ``n``: (time
        seen, polls)."""
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            count = await done()
            polls += 1
            if count >= n:
                return time.time(), polls
            if time.monotonic() > deadline:
                raise BenchError(f"only {count} done in SQL {timeout:.0f}s after the last job")
            await asyncio.sleep(0.002)

    def engine_for(self, system: System) -> Any:
        engines = {"mysql": self.mysql, "postgresql": self.postgres, "sqlite": self.sqlite}
        return engines.get(system.sql or "")

    @contextlib.asynccontextmanager
    async def namespace(self, system: System, target: int) -> AsyncIterator[Namespace]:
        ns = Namespace(system, self.settings, target)
        await ns.open(self.r)
        try:
            yield ns
        finally:
            await ns.close(self.r, self.engine_for(system))

    @staticmethod
    def cpu(servers: dict[str, list[int]], h: WorkerHandle) -> dict[str, float]:
        """CPU seconds used so far by the worker's process tree and by each server (for
        PostgreSQL, a process per connection: the postmaster's tree and what it reaped)."""
        out = {k: cpu_seconds(v) for k, v in servers.items() if k != "postgres"}
        for pm in servers.get("postgres", []):
            out["postgres"] = cpu_seconds(_tree(pm)) + _pg.reaped_cpu_seconds(pm)
        out["worker"] = cpu_seconds(_tree(h.proc.pid))
        return out

    async def server_pids(self, ns: Namespace) -> dict[str, list[int]]:
        """The servers a system's jobs go through: its Redis (the shared one, or aqueue's
        embedded one) and, for aqueue on MariaDB, the database server."""
        if ns.db is not None:
            redis = [int((await self.r.info("server"))["process_id"])]
        else:
            home = str(self.settings.home)
            redis = pids_where(lambda comm, cmd: comm.startswith("redis-server") and home in cmd)
        out = {"redis": redis}
        if ns.system.sql == "mysql":
            out["mariadb"] = pids_where(lambda comm, _: comm in ("mariadbd", "mysqld"))
        if ns.system.sql == "postgresql" and self.postmaster is not None:
            out["postgres"] = [self.postmaster]
        return out

    # -- workloads ---------------------------------------------------------------------

    async def drain(
        self, system: System, kind: str, n: int, *, sql_stats: bool = False
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Queue ``n`` jobs (awaiting producers: W1), then time one worker draining them
        (W2, W3). Returns (enqueue result, drain result)."""
        pg = sql_stats and system.sql == "postgresql"
        async with self.namespace(system, n) as ns, contextlib.AsyncExitStack() as stack:
            prod = await self.producer(ns, "awaiting", kind, n)
            enq = {"rate": n / prod["seconds"], **prod}
            counters = await stack.enter_async_context(_pg.Counters(self.postgres)) if pg else None
            # (with PostgreSQL's counters the harness polls on their connection: a second
            # connection of ours would publish its counts at any time, inside the window)
            q = ns.aqueue_queue() if system.is_aqueue and counters is None else None
            try:
                if q is not None:
                    await q.connect()
                    await q.counts()  # its SQL connection opens now, not in the window
                bg: dict[str, Any] = {}
                if counters is not None:
                    await counters.warm_up(ns.table)
                    bg = await _pg.background(counters, 0.25 if self.a.quick else 1.0)
                    s0 = await counters.read()
                elif sql_stats:
                    bg = await self.sql_background(0.25 if self.a.quick else 1.0)
                    s0 = await self.sql_status()
                calls0 = await self.redis_calls()
                servers = await self.server_pids(ns)
                async with self.worker(ns, f"{kind}") as h:
                    cpu0 = self.cpu(servers, h)
                    profiler = await self.start_profiler(h, system, kind)
                    done_at = float(await self.wait_key(ns, "done", 120 + n / 50, h))
                    calls1 = await self.redis_calls()
                    end, polls = done_at, 0
                    if counters is not None:
                        seen, polls = await self.wait_sql_done(
                            lambda: counters.done(ns.table), n, 60
                        )
                        end = max(done_at, seen)
                    elif q is not None:
                        seen, polls = await self.wait_sql_done(done_count(q), n, 60)
                        end = max(done_at, seen)
                    cpu1 = self.cpu(servers, h)
                    if counters is not None:
                        ports = _pg.client_ports(_tree(h.proc.pid), self.postgres.url.port or 5432)
                        backends = await counters.backends(ports)
                    elif sql_stats:
                        s1 = await self.sql_status()
                if counters is not None:
                    # the worker has exited: its backends publish their last counts
                    polls += 1 + await counters.wait_gone(backends)
                    s1 = await counters.read()
                    stopped_at = time.time()
            finally:
                if q is not None:
                    await q.close()
            first = await self.r.get(f"bench:{ns.run}:first")
        ready_at = h.ready["t"]
        out: dict[str, Any] = {
            "rate": n / (end - ready_at),
            "seconds": end - ready_at,
            "jobs": n,
            "spawn_to_ready_s": ready_at - h.spawned_at,
            "rate_from_spawn": n / (end - h.spawned_at),
            "ready_to_first_job_s": float(first) - ready_at if first else None,
            "peak_rss_mb": h.peak_rss_mb,
            "loop": h.ready.get("loop"),
        }
        out["cpu_us_per_job"] = {k: (cpu1[k] - cpu0[k]) * 1e6 / n for k in cpu0}
        if system.is_aqueue:
            out["sql_done_after_last_job_ms"] = (end - done_at) * 1e3
        if ns.db is not None:  # the embedded Redis is another server
            out["redis"] = redis_per_job(calls0, calls1, n)
        if counters is not None:
            # ours: the polls, s0's read (published at the next one) and s1's flush request
            ours = polls + 2
            out["sql"] = _pg.per_job(s0, s1, bg, ours, n, stopped_at - h.spawned_at)
            out["sql"]["backends"] = len(backends)
        elif sql_stats:
            out["sql"] = self.sql_per_job(s0, s1, bg, polls, n, end - h.spawned_at)
        if profiler is not None:
            out["profile"] = await self.finish_profiler(profiler, system)
        return enq, out

    async def sql_background(self, window: float = 1.0) -> dict[str, float]:
        """Statements per second on the server while nothing of ours runs: the noise that
        other clients of a shared server add to the counts."""
        a = await self.sql_status()
        t0 = time.monotonic()
        await asyncio.sleep(window)
        b = await self.sql_status()
        dt = time.monotonic() - t0
        # each SHOW GLOBAL STATUS is one question itself
        return {k: (b[k] - a[k] - (1 if k == "Questions" else 0)) / dt for k in SQL_ALL if k in b}

    @staticmethod
    def sql_per_job(
        s0: dict[str, int],
        s1: dict[str, int],
        bg: dict[str, float],
        polls: int,
        n: int,
        seconds: float,
    ) -> dict[str, Any]:
        delta = {k: s1[k] - s0.get(k, 0) for k in s1 if s1[k] != s0.get(k, 0) or k in SQL_ALL}
        # the harness's own statements in the window: its polls of the job counts (one
        # SELECT each) and the closing SHOW GLOBAL STATUS
        delta["Com_select"] -= polls
        delta["Questions"] -= polls + 1
        delta["Com_show_status"] = delta.get("Com_show_status", 0) - 1
        per_job = {k: delta.get(k, 0) / n for k in SQL_ALL}
        return {
            "per_job": per_job,
            "raw_delta": {k: v for k, v in delta.items() if v},
            "window_s": seconds,
            "background_per_s": bg,
            "background_estimate_per_job": {k: bg[k] * seconds / n for k in bg},
        }

    async def w1_batch(self, system: System, n: int) -> dict[str, Any]:
        if system.batch_api is None:
            return {"skipped": "no batch enqueue API"}
        async with self.namespace(system, n) as ns:
            prod = await self.producer(ns, "batch", "noop", n)
        return {"rate": n / prod["seconds"], "api": system.batch_api, **prod}

    async def w1_transaction(self, system: System, n: int) -> dict[str, Any]:
        """W1 with each enqueue in an application transaction that also inserts a row of
        its own, after the same transactions without the job (their own cost); the rows
        are counted afterwards."""
        out: dict[str, Any] = {"api": "task.options(connection=...)"}
        for mode, jobs in (("app-transaction", 0), ("transaction", n)):
            async with self.namespace(system, n) as ns:
                prod = await self.producer(ns, mode, "noop", n)
                async with self.engine_for(system).connect() as conn:
                    for t, want in ((ns.app_table, n), (ns.table, jobs)):
                        q = conn.dialect.identifier_preparer.quote(t)
                        got = (await conn.exec_driver_sql(f"SELECT count(*) FROM {q}")).scalar()
                        if got != want:
                            raise BenchError(f"{mode}: {got} rows in {t}, not {want}")
            key = "rate" if jobs else "app_only_rate"
            out.update({key: n / prod["seconds"], f"{mode}_seconds": prod["seconds"]})
        return out

    async def w4(self, system: System) -> dict[str, Any]:
        a = self.a
        total = round(a.rate * a.duration)
        async with self.namespace(system, total) as ns:
            servers = await self.server_pids(ns)
            async with self.worker(ns, "lat") as h:
                cpu0 = self.cpu(servers, h)
                profiler = await self.start_profiler(h, system, "lat")
                prod = await self.producer(ns, "rate", "lat")
                await self.wait_key(ns, "done", 120 + a.duration, h)
                cpu1 = self.cpu(servers, h)
            summary = None if profiler is None else await self.finish_profiler(profiler, system)
            raw = await self.r.lrange(f"bench:{ns.run}:lat", 0, -1)
        lat = sorted(float(x) * 1e3 for x in raw)
        if not lat:
            raise BenchError("no latency recorded")
        return {
            "p50_ms": percentile(lat, 0.50),
            "p95_ms": percentile(lat, 0.95),
            "p99_ms": percentile(lat, 0.99),
            "max_ms": lat[-1],
            "jobs": len(lat),
            "target_rate": a.rate,
            "duration_s": a.duration,
            "producer": prod,
            "peak_rss_mb": h.peak_rss_mb,
            "cpu_us_per_job": {
                **{k: (cpu1[k] - cpu0[k]) * 1e6 / total for k in cpu0},
                "producer": prod.get("cpu_s", 0.0) * 1e6 / total,
            },
            **({"profile": summary} if summary else {}),
        }

    async def w5(self, system: System, kind: str, n: int, payload: int) -> dict[str, Any]:
        """The producer and two worker processes at once: from the producer's first
        enqueue to the last completion (for aqueue: the last row ``done`` in SQL)."""
        async with self.namespace(system, n) as ns:
            q = ns.aqueue_queue() if system.is_aqueue else None
            try:
                if q is not None:
                    await q.connect()
                async with contextlib.AsyncExitStack() as stack:
                    hs = [
                        await stack.enter_async_context(self.worker(ns, f"w5-{kind}-{i}"))
                        for i in range(2)
                    ]
                    prod = await self.producer(ns, "awaiting", kind, n, payload=payload)
                    end = float(await self.wait_key(ns, "done", 120 + n / 50, hs[0]))
                    if q is not None:
                        seen, _ = await self.wait_sql_done(done_count(q), n, 120)
                        end = max(end, seen)
            finally:
                if q is not None:
                    await q.close()
        seconds = end - prod["started_at"]
        return {
            "rate": n / seconds,
            "seconds": seconds,
            "jobs": n,
            "payload_bytes": payload,
            "blob": self.a.w5_blob,
            "enqueue_rate": n / prod["seconds"],
            "peak_rss_mb": [h.peak_rss_mb for h in hs],
        }

    async def ceiling(self, n: int) -> dict[str, Any]:
        ns = Namespace(SYSTEMS["aqueue"], self.settings, n)
        prod = await self.producer(ns, "ceiling", "sleep", n)
        return {"rate": n / prod["seconds"], **prod}

    # -- profiling -----------------------------------------------------------------------

    async def start_profiler(
        self, h: WorkerHandle, system: System, kind: str
    ) -> tuple[asyncio.subprocess.Process, Path] | None:
        if not (self.a.profile and system.is_aqueue and kind in ("noop", "lat")):
            return None
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.a.profile.mkdir(parents=True, exist_ok=True)
        name = f"W2-{self.a.jobs}" if kind == "noop" else f"W4-{self.a.rate:g}"
        out = self.a.profile / f"{system.name}-{name}.txt"
        proc = await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--pid",
            str(h.proc.pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            "-o",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return proc, out

    async def finish_profiler(
        self, profiler: tuple[asyncio.subprocess.Process, Path], system: System
    ) -> str:
        proc, out = profiler
        try:
            await asyncio.wait_for(proc.wait(), 30)  # it stops when the worker exits
        except TimeoutError:
            proc.terminate()
            await proc.wait()
        summary = out.with_suffix(".summary.txt")
        summary.write_text(_report.profile_summary(out))
        return str(summary)

    # -- the run -------------------------------------------------------------------------

    async def run_system(self, system: System, rep: int, workloads: set[str]) -> dict[str, Any]:
        a = self.a
        rec: dict[str, Any] = {"repeat": rep}

        async def step(name: str, coro: Any) -> Any:
            t0 = time.monotonic()
            try:
                return await coro
            except Exception as exc:  # one failed measurement does not end the run
                self.errors += 1
                msg = str(exc) if isinstance(exc, BenchError) else repr(exc)
                rec[name] = {"error": msg}
                print(f"  {system.name} {name}: FAILED: {msg}", flush=True)
                return None
            finally:
                rec.setdefault("wall_s", {})[name] = round(time.monotonic() - t0, 2)

        if workloads & {"W1", "W2"}:
            sql = system.server_sql and not a.no_sql_stats
            got = await step("W2", self.drain(system, "noop", a.jobs, sql_stats=sql))
            if got is not None:
                if "W1" in workloads:
                    rec["W1"] = got[0]
                if "W2" in workloads:
                    rec["W2"] = got[1]
        if "W1" in workloads:
            got = await step("W1b", self.w1_batch(system, a.jobs))
            if got is not None:
                rec["W1b"] = got
            if system.server_sql:
                got = await step("W1t", self.w1_transaction(system, a.jobs))
                if got is not None:
                    rec["W1t"] = got
        if "W3" in workloads:
            got = await step("W3", self.drain(system, "sleep", a.jobs))
            if got is not None:
                rec["W3"] = got[1]
        if "W4" in workloads:
            got = await step("W4", self.w4(system))
            if got is not None:
                rec["W4"] = got
        if "W5" in workloads and rep < a.w5_repeats:
            rec["W5"] = {}
            for label, kind, n, payload in W5_VARIANTS:
                if a.quick and label not in W5_QUICK:
                    continue
                if a.w5_sizes and label not in a.w5_sizes:
                    continue
                n = a.jobs if a.quick else n
                got = await step(f"W5 {label}", self.w5(system, kind, n, payload))
                if got is not None:
                    rec["W5"][label] = got
        print(f"  {system.name}: {_report.brief(rec)}", flush=True)
        return rec


async def _streaq_library(r: Redis) -> bool:
    """streaQ loads a Redis FUNCTION library, which is server-wide (not per DB)."""
    try:
        return bool(await r.execute_command("FUNCTION", "LIST", "LIBRARYNAME", "streaq"))
    except Exception:
        return False


async def main(a: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the workers, each in its own
    # session, are stopped by the cleanup below instead of being left running.
    me = asyncio.current_task()
    assert me is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    workloads = set(a.workloads)
    systems = select(a.only)
    # Only arguments over compress_over (4 KB: W5's 10 and 100 KB) are compressed; the
    # workers and the producer read it in app_aqueue.
    os.environ["BENCH_AQ_COMPRESSION"] = a.aqueue_compression
    workdir = Path(tempfile.mkdtemp(prefix="aqueue-bench-"))
    bench = Bench(a, workdir)
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "args": {
                "jobs": a.jobs,
                "repeats": a.repeats,
                "w5_repeats": min(a.w5_repeats, a.repeats),
                "w5_blob": a.w5_blob,
                "aqueue_compression": a.aqueue_compression,
                "workloads": sorted(workloads),
                "concurrency": a.concurrency,
                "batch_size": a.batch_size,
                "rate": a.rate,
                "duration": a.duration,
                "quick": a.quick,
                "only": a.only,
            },
            "machine": _info.machine(),
            "versions": _info.versions(),
            "aqueue_source_at_start": _info.source_state(BENCH_DIR.parent),
        },
        "systems": {},
        "ceiling": {"runs": []},
    }
    meta = results["meta"]
    streaq_lib_before = await _streaq_library(bench.r)
    try:
        try:
            await bench.r.ping()
        except Exception as exc:
            print(f"cannot reach Redis at {a.redis}: {exc}", file=sys.stderr)
            return 2
        meta["redis"] = await _info.redis_info(bench.r)
        if any(s.sql == "mysql" for s in systems):
            bench.mysql = create_async_engine(a.database, pool_size=2)
            try:
                meta["mariadb"] = await _info.mysql_info(bench.mysql)
            except Exception as exc:
                meta["mariadb"] = {"error": repr(exc)}
        if any(s.sql == "postgresql" for s in systems):
            # autocommit: the harness's counting connection runs a transaction per statement
            bench.postgres = create_async_engine(
                a.postgres, pool_size=2, isolation_level="AUTOCOMMIT"
            )
            try:
                meta["postgres"] = await _pg.info(bench.postgres)
                bench.postmaster = meta["postgres"].get("postmaster_pid")
            except Exception as exc:
                meta["postgres"] = {"error": repr(exc)}
        if any(s.sql == "sqlite" for s in systems):
            from aqueue import _embedded

            bench.settings.home.mkdir(mode=0o700)
            bench.sqlite = create_async_engine(_embedded.sqlite_url(bench.settings.home))
            meta["sqlite"] = await _info.sqlite_info(bench.settings.home)
        available: list[System] = []
        for s in systems:
            reason = check_available(s)
            if reason is None and s.sql == "mysql" and "error" in meta.get("mariadb", {}):
                reason = f"MariaDB unreachable: {meta['mariadb']['error']}"
            if reason is None and s.sql == "postgresql" and "error" in meta.get("postgres", {}):
                reason = f"PostgreSQL unreachable: {meta['postgres']['error']}"
            results["systems"][s.name] = {"status": "ok" if reason is None else "unavailable"}
            if reason is not None:
                results["systems"][s.name]["reason"] = reason
                print(f"{s.name}: unavailable here: {reason}", flush=True)
            else:
                results["systems"][s.name]["runs"] = []
                available.append(s)
        print(
            f"aqueue bench: {a.jobs} jobs, {a.repeats} repeat(s), workloads "
            f"{','.join(sorted(workloads))}, systems {', '.join(s.name for s in available)}",
            flush=True,
        )
        for rep in range(a.repeats):
            print(f"repeat {rep + 1}/{a.repeats}", flush=True)
            if bench.mysql is not None and "error" not in meta.get("mariadb", {}):
                ms = await _info.commit_latencies(bench.mysql, 50 if a.quick else 300)
                lat = {f"p{q}_ms": round(percentile(ms, q / 100), 2) for q in (50, 95, 99)}
                lat.update(n=len(ms), max_ms=round(ms[-1], 2))
                meta.setdefault("commit_latency", []).append(lat)
                print(f"  MariaDB single-row commit p50/p99 {lat['p50_ms']}/{lat['p99_ms']} ms")
            if bench.postgres is not None and "error" not in meta.get("postgres", {}):
                ms = await _info.commit_latencies(bench.postgres, 50 if a.quick else 300)
                lat = {f"p{q}_ms": round(percentile(ms, q / 100), 2) for q in (50, 95, 99)}
                lat.update(n=len(ms), max_ms=round(ms[-1], 2))
                meta.setdefault("postgres_commit_latency", []).append(lat)
                print(f"  PostgreSQL single-row commit p50/p99 {lat['p50_ms']}/{lat['p99_ms']} ms")
            if "W3" in workloads:
                try:
                    results["ceiling"]["runs"].append(await bench.ceiling(a.jobs))
                except BenchError as exc:
                    results["ceiling"]["runs"].append({"error": str(exc)})
            for s in available:
                rec = await bench.run_system(s, rep, workloads)
                results["systems"][s.name]["runs"].append(rec)
        if bench.sqlite is not None:
            meta["sqlite"]["embedded_redis"] = await _embedded_redis_info(bench.settings.home)
    finally:
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
        meta["aqueue_source_at_end"] = _info.source_state(BENCH_DIR.parent)
        if not streaq_lib_before and await _streaq_library(bench.r):
            await bench.r.execute_command("FUNCTION", "DELETE", "streaq")
        await bench.r.aclose()
        for engine in (bench.mysql, bench.postgres, bench.sqlite):
            if engine is not None:
                await engine.dispose()
        if bench.settings.home.exists():
            from aqueue._embedded import stop_embedded_redis

            await asyncio.to_thread(stop_embedded_redis, bench.settings.home)
        if bench.errors or a.keep_logs:
            print(f"worker logs kept in {bench.logs}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    _report.summarize(results)
    print()
    print(_report.table(results))
    if w5 := _report.table_w5(results):
        print("\n" + w5)
    print()
    print(_report.redis_table(results))
    print()
    print(_report.sql_table(results))
    print()
    print(_report.pg_sql_table(results))
    if tx := _report.transactional_table(results):
        print("\n" + tx)
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {a.output}")
    if a.doc is not None:
        a.doc.write_text(_report.document(results))
        print(f"doc: {a.doc}")
    return 1 if bench.errors else 0


async def _embedded_redis_info(home: Path) -> dict[str, Any]:
    from aqueue import _embedded

    url = await asyncio.to_thread(_embedded.ensure_embedded_redis, home)
    r = Redis.from_url(url)
    try:
        return await _info.redis_info(r)
    finally:
        await r.aclose()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    root = BENCH_DIR.parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=None, help="N for W1-W3 (default 20000)")
    p.add_argument("--repeats", type=int, default=None, help="default 3; the table shows medians")
    p.add_argument(
        "--only",
        help=f"comma-separated, of: {', '.join(SYSTEMS)} (aqueue: all three; aqueue-mariadb: "
        "only the MariaDB row)",
    )
    p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        type=lambda s: [w.strip().upper() for w in s.split(",") if w.strip()],
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke test: N=200, 1 repeat, short W4 and W5"
    )
    p.add_argument(
        "--w5-repeats",
        type=int,
        default=1,
        help="repeats that also run W5 (default 1: its 155,000 jobs per system take longer "
        "than W1-W4 together)",
    )
    p.add_argument(
        "--w5-blob",
        choices=["repeat", "json", "random"],
        default="json",
        help="W5's argument: JSON records, as an application's document (default), one\n"
        "character repeated (the most compressible), or random characters",
    )
    p.add_argument(
        "--aqueue-compression",
        choices=["zlib", "zstd"],
        default="zstd",
        help="aqueue's codec for arguments over 4 KB (Queue(compression=...)): zstd (default,\n"
        "as the docs advise for large arguments; needs aqueue[zstd]) or zlib (the Queue's default)",
    )
    p.add_argument(
        "--w5-sizes",
        type=lambda s: [w.strip() for w in s.split(",") if w.strip()],
        default=None,
        help="W5's variants to run, of: " + ", ".join(v[0] for v in W5_VARIANTS) + " (default all)",
    )
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=1000, help="jobs per batch call (W1)")
    p.add_argument("--rate", type=float, default=None, help="W4 jobs/s (default 500)")
    p.add_argument("--duration", type=float, default=None, help="W4 seconds (default 10)")
    p.add_argument(
        "--redis",
        default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379"),
        help="Redis server (no DB number)",
    )
    p.add_argument("--harness-db", type=int, default=9, help="Redis DB of the counters")
    p.add_argument(
        "--first-db", type=int, default=10, help="systems use DBs first-db .. first-db+4"
    )
    p.add_argument(
        "--database",
        default=os.environ.get(
            "AQUEUE_BENCH_DATABASE_URL", "mysql+asyncmy://root@127.0.0.1:3306/test"
        ),
    )
    p.add_argument(
        "--postgres",
        default=os.environ.get(
            "AQUEUE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ),
        help="the aqueue (PostgreSQL) row's database",
    )
    p.add_argument(
        "--no-sql-stats", action="store_true", help="skip the SQL servers' counters (W2)"
    )
    p.add_argument("--output", type=Path, default=None)
    p.add_argument("--doc", type=Path, default=None, help="default docs/benchmarks.md")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    p.add_argument(
        "--report", type=Path, metavar="JSON", help="run nothing: render an earlier run's results"
    )
    p.add_argument(
        "--profile",
        type=Path,
        nargs="?",
        const=BENCH_DIR / "results" / "profile",
        default=None,
        metavar="DIR",
        help="record the aqueue workers of W2 and W4 with py-spy into DIR (default\n"
        "benchmarks/results/profile); the sampling perturbs the timings, so the\n"
        "results then go to DIR/results.json and the doc is left alone",
    )
    a = p.parse_args(argv)
    bad = set(a.workloads) - set(WORKLOADS)
    if bad:
        p.error(f"unknown workloads {sorted(bad)} (known: {', '.join(WORKLOADS)})")
    a.jobs = a.jobs or (200 if a.quick else 20_000)
    a.repeats = a.repeats or (1 if a.quick else 3)
    a.rate = a.rate or (100.0 if a.quick else 500.0)
    a.duration = a.duration or (2.0 if a.quick else 10.0)
    results = BENCH_DIR / "results"
    if a.profile is not None:
        a.output = a.output or a.profile / "results.json"
    a.output = a.output or results / ("quick.json" if a.quick else "latest.json")
    if a.no_doc or ((a.quick or a.profile is not None) and a.doc is None):
        a.doc = None
    else:
        a.doc = a.doc or root / "docs" / "benchmarks.md"
    return a


def render(a: argparse.Namespace) -> int:
    """``--report FILE``: print the table of an earlier run and write its doc again."""
    results = json.loads(a.report.read_text())
    _report.summarize(results)
    print(_report.table(results))
    if w5 := _report.table_w5(results):
        print("\n" + w5)
    print()
    print(_report.redis_table(results))
    print()
    print(_report.sql_table(results))
    print()
    print(_report.pg_sql_table(results))
    if tx := _report.transactional_table(results):
        print("\n" + tx)
    if a.doc is not None:
        a.doc.write_text(_report.document(results))
        print(f"doc: {a.doc}")
    return 0


if __name__ == "__main__":
    args = parse_args()
    sys.exit(render(args) if args.report else asyncio.run(main(args)))
