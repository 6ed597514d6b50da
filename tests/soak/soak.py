"""The randomized fault soak of issue 16.

``python -m tests.soak.soak --seed 1 --duration 180`` (or ``nox -s soak -- --seed 1
--duration 180``) starts its own ``redis-server`` and its own ``mariadbd`` (or, with
``--database postgres``, its own PostgreSQL 15 server) on free ports, a TCP proxy in front
of the SQL server, three runners (``python -m aqueue run app:queue``,
concurrency 50, lease 3 s, heartbeat 1 s) and a producer process that enqueues ~111 jobs
a second. Every 5-15 s (scaled down for short runs) it injects one fault, the kinds in a
shuffled cycle drawn from ``random.Random(seed)``:

- ``runner_sigkill``: SIGKILL a runner, start a new one;
- ``runner_sigstop``: SIGSTOP a runner for 4-7 s (past its lease), then SIGCONT;
- ``runner_sigterm``: SIGTERM a runner, wait for its exit, start a new one;
- ``redis_restart`` / ``redis_flushall``: Redis restarted empty / FLUSHALL;
- ``mariadb_sigkill`` / ``postgres_sigkill``: SIGKILL the SQL server (PostgreSQL: the
  postmaster and its backends), restart it 0.1-2.5 s later (same port, datadir);
- ``sql_cut``: the proxy aborts every SQL connection and refuses new ones for 0.2-1 s;
- ``machine_pause``: every runner SIGSTOPped together for ~8 s, then SIGCONTed together.

When the time is up it lets the producer finish, thaws and tops up the runners, waits
until every acknowledged job is final in SQL (read directly, not through the proxy), stops
the runners and hands the run directory to ``checker.py``, which classifies every
acknowledged job. Exit status 1 on anything outside the documented window (lost, stuck,
concurrent, duplicate outside the window, unexpected), 2 on a harness failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.chaos.harness import RedisServer, RunnerProcess, clean_env, now_us, spawn_runner
from tests.soak.checker import Report, classify
from tests.soak.servers import MariaServer, PostgresServer, SqlProxy

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).parent / "app.py"

KINDS = (
    "runner_sigkill",
    "runner_sigstop",
    "runner_sigterm",
    "redis_restart",
    "redis_flushall",
    "mariadb_sigkill",
    "sql_cut",
    "machine_pause",
)
DATABASES = ("mariadb", "postgres")


def kinds_for(database: str) -> tuple[str, ...]:
    """The fault kinds; the SQL server's SIGKILL is named after the server killed."""
    return tuple(f"{database}_sigkill" if k == "mariadb_sigkill" else k for k in KINDS)


@dataclass
class Settings:
    seed: int
    duration: float
    jobs: int
    runners: int = 3
    concurrency: int = 50
    lease: float = 3.0
    heartbeat: float = 1.0
    grace: float = 0.5
    reclaim_period: float = 0.5
    sweep_period: float = 2.0
    sweep_grace: float = 2.0
    max_stalls: int = 20
    fault_min: float = 5.0
    fault_max: float = 15.0
    pause_s: float = 8.0
    drain_timeout: float = 180.0
    database: str = "mariadb"
    proxy_resets: bool = False
    """While MariaDB is down the proxy accepts connections and resets them (a load balancer
    in front of a dead server) instead of refusing them (the server's own port)."""

    @property
    def margin(self) -> float:
        return self.lease / 3

    def runner_args(self) -> list[str]:
        return [
            *("--concurrency", str(self.concurrency)),
            *("--lease", str(self.lease), "--heartbeat", str(self.heartbeat)),
            *("--grace", str(self.grace), "--reclaim-period", str(self.reclaim_period)),
            *("--sweep-period", str(self.sweep_period)),
            *("--sweep-grace", str(self.sweep_grace)),
            *("--max-stalls", str(self.max_stalls), "--log-level", "info"),
        ]


def settings_for(seed: int, duration: float, jobs: int | None = None) -> Settings:
    """The full soak is 180 s and 20,000 jobs with a fault every 5-15 s; a shorter one
    keeps the rate of jobs and packs faults closer (down to 2-6 s), so that a 60 s run
    still sees every kind at least once."""
    scale = max(0.4, min(1.0, duration / 180))
    return Settings(
        seed=seed,
        duration=duration,
        jobs=jobs if jobs is not None else round(20_000 * duration / 180),
        fault_min=5.0 * scale,
        fault_max=15.0 * scale,
    )


@dataclass
class FaultRecord:
    kind: str
    start: int
    end: int
    pids: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


class Soak:
    def __init__(self, cfg: Settings, run_dir: Path) -> None:
        self.cfg = cfg
        self.dir = run_dir
        self.rng = random.Random(f"faults-{cfg.seed}")
        self.exec_dir = run_dir / "exec"
        self.log_dir = run_dir / "logs"
        self.app_dir = run_dir / "app"
        for d in (self.exec_dir, self.log_dir, self.app_dir):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy(APP, self.app_dir / "app.py")
        self.redis = RedisServer(run_dir / "redis")
        self.maria: MariaServer | None = None
        self.pg: PostgresServer | None = None
        self.db: MariaServer | PostgresServer
        if cfg.database == "postgres":
            self.db = self.pg = PostgresServer(run_dir)
        else:
            self.db = self.maria = MariaServer(run_dir / "mariadb")
        self.proxy: SqlProxy | None = None
        self.runners: list[RunnerProcess] = []  # the live ones
        self.all_runners: list[RunnerProcess] = []
        self.spawned_at: dict[int, int] = {}
        self.stopped_by: dict[int, str] = {}  # pid -> the fault or the end that stopped it
        self.producer: subprocess.Popen[bytes] | None = None
        self.queue_name = f"soak_{uuid.uuid4().hex[:6]}"
        self.timeline_fd = os.open(
            run_dir / "timeline.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        self.recovery: dict[str, Any] = {}
        self.source = "unknown"

    # -- setup

    def start_servers(self) -> None:
        self.redis.start()
        self.db.install()
        self.db.start()
        self.db.create_database("soak")
        self.proxy = SqlProxy(self.db.port)
        self.proxy.start()

    def db_url(self, port: int | None = None) -> str:
        """The soak database on the server itself, or through ``port`` (the proxy)."""
        if self.pg is not None:
            return self.pg.url_at(port or self.pg.port, "soak")
        assert self.maria is not None
        return self.maria.url(port)

    def env(self) -> dict[str, str]:
        assert self.proxy is not None
        return clean_env(
            SOAK_QUEUE=self.queue_name,
            SOAK_REDIS_URL=self.redis.url,
            SOAK_DATABASE_URL=self.db_url(self.proxy.port),
            SOAK_TABLE="aqueue_soak",
            SOAK_PREFIX="soak",
            SOAK_LOG_DIR=str(self.exec_dir),
            # then the caller's PYTHONPATH (e.g. a snapshot of src/), as the chaos tests do
            PYTHONPATH=os.pathsep.join([str(self.app_dir), str(REPO), *inherited_path()]),
        )

    def spawn(self) -> RunnerProcess:
        name = f"runner-{len(self.all_runners)}"
        p = spawn_runner(
            self.app_dir, self.env(), *self.cfg.runner_args(), name=name, log_dir=self.log_dir
        )
        self.spawned_at[p.pid] = now_us()
        self.runners.append(p)
        self.all_runners.append(p)
        return p

    async def wait_started(self, procs: list[RunnerProcess], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not all(p.runner_id() for p in procs):
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.name} exited at start:\n{p.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("runners did not start: " + ", ".join(p.tail() for p in procs))
            await asyncio.sleep(0.1)

    def start_producer(self) -> None:
        cmd = [
            sys.executable, "-m", "tests.soak.producer",
            *("--seed", str(self.cfg.seed), "--count", str(self.cfg.jobs)),
            *("--duration", str(self.cfg.duration)),
            *("--out", str(self.dir / "producer.jsonl")),
        ]  # fmt: skip
        with (self.log_dir / "producer.log").open("wb") as log:
            self.producer = subprocess.Popen(
                cmd, cwd=REPO, env=self.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    # -- faults

    def record(self, f: FaultRecord) -> None:
        os.write(self.timeline_fd, (json.dumps(asdict(f)) + "\n").encode())
        print(
            f"  t+{(f.start - self.t0) / 1e6:6.1f}s {f.kind:16} "
            f"{(f.end - f.start) / 1e6:5.2f}s {f.detail}",
            flush=True,
        )

    def pick_runner(self) -> RunnerProcess:
        self.runners = [p for p in self.runners if p.poll() is None]
        return self.rng.choice(self.runners)

    async def inject(self, kind: str) -> None:
        rng = self.rng
        if kind == "runner_sigkill":
            p = self.pick_runner()
            self.stopped_by[p.pid] = kind
            t = p.kill9()
            self.runners.remove(p)
            self.spawn()
            self.record(FaultRecord(kind, t, t, [p.pid], {"runner": p.name}))
        elif kind == "runner_sigstop":
            p = self.pick_runner()
            hold = rng.uniform(self.cfg.lease + 1, self.cfg.lease * 2 + 1)
            t = now_us()
            os.killpg(p.pid, signal.SIGSTOP)
            await asyncio.sleep(hold)  # the fault's own length
            os.killpg(p.pid, signal.SIGCONT)
            self.record(FaultRecord(kind, t, now_us(), [p.pid], {"runner": p.name}))
        elif kind == "runner_sigterm":
            p = self.pick_runner()
            self.stopped_by[p.pid] = kind
            t = now_us()
            p.term()
            self.runners.remove(p)
            rc = await asyncio.to_thread(p.wait, 60)
            await asyncio.to_thread(p.exited.wait, 5)
            end = p.exited_at_us or now_us()
            self.spawn()
            self.record(FaultRecord(kind, t, end, [p.pid], {"runner": p.name, "rc": rc}))
        elif kind == "redis_restart":
            t = now_us()
            await asyncio.to_thread(self.redis.restart)
            self.record(FaultRecord(kind, t, now_us()))
        elif kind == "redis_flushall":
            t = now_us()
            c = self.redis.client()
            try:
                c.flushall()
            finally:
                c.close()
            self.record(FaultRecord(kind, t, t))
        elif kind in ("mariadb_sigkill", "postgres_sigkill"):
            assert self.proxy is not None
            down = rng.uniform(0.1, 2.5)
            t = now_us()
            # The proxy refuses while the server is down, as the server's own port would
            # (its open connections die with the server), unless told to reset them.
            if not self.cfg.proxy_resets:
                await asyncio.to_thread(self.proxy.refuse)
            await asyncio.to_thread(self.db.kill)
            await asyncio.sleep(down)  # the outage's planned length
            start_s = await asyncio.to_thread(self.db.start)
            if not self.cfg.proxy_resets:
                await asyncio.to_thread(self.proxy.restore)
            end = now_us()
            detail = {"down_s": round(down, 2), "start_s": round(start_s, 2)}
            self.record(FaultRecord(kind, t, end, [], detail))
        elif kind == "sql_cut":
            assert self.proxy is not None
            hold = rng.uniform(0.2, 1.0)
            t = now_us()
            n = await asyncio.to_thread(self.proxy.cut)
            await asyncio.sleep(hold)  # the cut's planned length
            await asyncio.to_thread(self.proxy.restore)
            self.record(FaultRecord(kind, t, now_us(), [], {"connections_cut": n}))
        elif kind == "machine_pause":
            procs = [p for p in self.runners if p.poll() is None]
            t = now_us()
            for p in procs:
                os.killpg(p.pid, signal.SIGSTOP)
            await asyncio.sleep(self.cfg.pause_s)  # the pause's length
            for p in procs:
                os.killpg(p.pid, signal.SIGCONT)
            self.record(FaultRecord(kind, t, now_us(), [p.pid for p in procs]))
        else:
            raise ValueError(kind)

    async def fault_loop(self, until: float) -> None:
        cycle: list[str] = []
        while True:
            gap = self.rng.uniform(self.cfg.fault_min, self.cfg.fault_max)
            if time.monotonic() + gap >= until:
                return
            await asyncio.sleep(gap)  # the schedule drawn from the seed
            if not cycle:  # every kind once per cycle, in a seeded order
                cycle = list(kinds_for(self.cfg.database))
                self.rng.shuffle(cycle)
            await self.inject(cycle.pop())

    async def watch_runners(self) -> None:
        """Replace a runner that exited by itself (not by a fault: a finding, reported by
        the checker), as a supervisor would. Polls the exit events the harness sets."""
        while True:
            for p in list(self.runners):
                if p.exited.is_set():
                    print(f"  !! {p.name} exited by itself with {p.poll()}", flush=True)
                    self.runners.remove(p)
                    self.spawn()
            await asyncio.sleep(0.2)  # polling with no deadline: it runs until cancelled

    # -- end

    async def rows(self) -> dict[str, dict[str, Any]]:
        """Every job row of the soak's queue, read from the SQL server directly (not through
        the proxy, which is the soak's to disturb)."""
        engine = create_async_engine(self.db_url(), pool_size=1)
        try:
            async with engine.connect() as conn:
                res = await conn.execute(
                    sa.text(
                        "SELECT id, status, attempts, stalls, error FROM aqueue_soak "
                        "WHERE queue = :q"
                    ),
                    {"q": self.queue_name},
                )
                keys = ("status", "attempts", "stalls", "error")
                return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in res}
        finally:
            await engine.dispose()

    async def drain(self) -> float:
        """Until every acknowledged job is final in SQL; seconds taken."""
        t0 = time.monotonic()
        while True:
            rows = await self.rows()
            left = sum(
                1
                for j in self.acked()
                if j not in rows or rows[j]["status"] not in ("done", "failed", "cancelled")
            )
            if left == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > self.cfg.drain_timeout:
                print(f"  drain: {left} acknowledged jobs not final", flush=True)
                return time.monotonic() - t0
            await asyncio.sleep(0.5)  # polling SQL with the drain deadline

    def acked(self) -> set[str]:
        out = set()
        with contextlib.suppress(FileNotFoundError):
            for line in (self.dir / "producer.jsonl").read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    ev = json.loads(line)
                    if ev.get("k") == "a":
                        out.add(ev["j"])
        return out

    async def dump_sql(self) -> None:
        (self.dir / "sql.json").write_text(json.dumps(await self.rows()))

    async def stop_runners(self) -> None:
        for p in self.runners:
            self.stopped_by.setdefault(p.pid, "end of the soak")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGCONT)
            p.term()
        for p in self.runners:
            try:
                await asyncio.to_thread(p.wait, 30)
            except subprocess.TimeoutExpired:
                p.kill9()
            await asyncio.to_thread(p.exited.wait, 5)

    def write_runners(self) -> None:
        with (self.dir / "runners.jsonl").open("w") as f:
            for p in self.all_runners:
                f.write(
                    json.dumps(
                        {
                            "pid": p.pid,
                            "name": p.name,
                            "runner_id": p.runner_id(),
                            "start": self.spawned_at.get(p.pid),
                            "exit": p.exited_at_us,
                            "rc": p.returncode,
                            "stopped_by": self.stopped_by.get(p.pid),
                        }
                    )
                    + "\n"
                )

    def cleanup(self) -> None:
        for p in self.all_runners:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
        if self.producer is not None and self.producer.poll() is None:
            self.producer.kill()
            self.producer.wait(10)
        if self.proxy is not None:
            self.proxy.close()
        self.redis.kill()
        self.db.stop()
        os.close(self.timeline_fd)

    async def run(self) -> Report:
        cfg = self.cfg
        print(
            f"soak: seed {cfg.seed}, {cfg.duration:.0f} s, {cfg.jobs} jobs, "
            f"{cfg.database}, dir {self.dir}"
        )
        self.source = source_revision()
        await asyncio.to_thread(self.start_servers)
        for _ in range(cfg.runners):
            self.spawn()
        await self.wait_started(list(self.runners))
        self.t0 = now_us()
        self.start_producer()
        until = time.monotonic() + cfg.duration
        watcher = asyncio.create_task(self.watch_runners())
        try:
            await self.fault_loop(until)
            print("  faults over; waiting for the producer", flush=True)
            assert self.producer is not None
            prod_rc = await asyncio.to_thread(self.producer.wait, cfg.duration + 120)
            t_end = now_us()
            drained = await self.drain()
        finally:
            watcher.cancel()
        self.recovery["drain_after_producer_s"] = round(drained, 1)
        print(f"  producer rc {prod_rc}; drained in {drained:.1f} s", flush=True)
        await self.stop_runners()
        self.write_runners()
        await self.dump_sql()
        at_end = source_revision()
        if at_end != self.source:  # runners started during the run loaded the newer code
            self.source = f"{self.source} at the start, {at_end} at the end"
        settings = asdict(cfg) | {
            "margin": cfg.margin,
            "source": self.source,
            "queue": self.queue_name,
            "producer_rc": prod_rc,
            "producer_end_us": t_end,
            "recovery": self.recovery,
            "runner_processes": len(self.all_runners),
        }
        (self.dir / "settings.json").write_text(json.dumps(settings, indent=1))
        report = classify(self.dir)
        (self.dir / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
        return report


def inherited_path() -> list[str]:
    return [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]


def source_revision() -> str:
    """The commit the runners run, and whether src/ differs from it (other work in the
    tree): the figures belong to that code."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}"


def excerpts(run_dir: Path, report: Report, limit: int = 6) -> str:
    """Runner log lines that name the jobs outside the window, for the report."""
    out = []
    bad = [f.job for f in report.findings if f.cls != "inside"]
    bad += report.lists.get("lost", []) + report.lists.get("stuck", [])
    for job in list(dict.fromkeys(bad))[:limit]:
        out.append(f"--- {job}")
        for log in sorted((run_dir / "logs").glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if job in line:
                    out.append(f"{log.stem}: {line[:300]}")
    return "\n".join(out)


async def amain(args: argparse.Namespace) -> int:
    cfg = settings_for(args.seed, args.duration, args.jobs)
    cfg.proxy_resets = args.proxy_resets
    cfg.database = args.database
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    run_dir = base / f"aqueue-soak-{args.seed}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    soak = Soak(cfg, run_dir)
    try:
        report = await soak.run()
    finally:
        soak.cleanup()
    print(report.text())
    print(f"source: {soak.source}")
    if not report.ok:
        print(excerpts(run_dir, report))
    if args.keep or not report.ok:
        print(f"run directory kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        if soak.pg is not None:  # its datadir is outside the run directory (see its doc)
            soak.pg.remove()
    return 0 if report.ok else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=180.0, help="seconds of faults and load")
    p.add_argument("--jobs", type=int, default=None, help="default: 20,000 per 180 s")
    p.add_argument("--dir", default=None, help="where the run directory goes (default: tmp)")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument(
        "--database",
        choices=DATABASES,
        default="mariadb",
        help="the SQL server the soak starts, kills and restarts (default: mariadb)",
    )
    p.add_argument(
        "--proxy-resets",
        action="store_true",
        help="while MariaDB is down, accept SQL connections and reset them (as a load\n"
        "balancer would) instead of refusing them",
    )
    args = p.parse_args()
    try:
        sys.exit(asyncio.run(amain(args)))
    except RuntimeError as exc:
        print(f"soak: harness failure: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
