"""Fault-injection harness: real runner processes, real servers, an outside witness.

- :class:`RedisServer`: a ``redis-server`` of the test's own (free port, temp dir, no
  persistence) that the test may stop, kill, restart empty, freeze and thaw. Fixture
  ``own_redis`` yields one and kills it afterwards.
- :class:`Checker`: handlers of ``apps/chaos_app.py`` record every execution (start, end)
  as JSON lines in a list on the *shared* Redis (127.0.0.1:6379, unique key), which no test
  disturbs. :meth:`Checker.classify` compares them with the final SQL statuses: lost,
  duplicated, concurrent, unexpected and stuck jobs.
- :func:`spawn_runner`: ``python -m aqueue run app:queue`` with short leases, in its own
  process group, logging to a file; the returned :class:`RunnerProcess` knows when it died.
- :func:`wait_for`, :func:`drain`: polling with deadlines.
- :class:`ChaosEnv` (fixture ``chaos``: ``env = await chaos(redis_url)``): one isolated
  setup (app dir, queue name, table, key prefix, checker) with enqueue/SQL/verdict helpers,
  cleaned up after the test (processes killed, table dropped, keys deleted), on the shared
  MariaDB, or on the shared PostgreSQL too for a test marked :data:`on_both_databases`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from aqueue import JobStatus, Queue
from aqueue._store.store import Store

SHARED_REDIS_URL = os.environ.get("AQUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MYSQL_URL = os.environ.get("AQUEUE_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
POSTGRES_URL = os.environ.get(
    "AQUEUE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
#: The shared SQL servers a chaos test may run on (none of them is ever disturbed: a test
#: that kills its database starts its own, ``tests/soak/servers.py``).
DATABASE_URLS = {"mariadb": MYSQL_URL, "postgres": POSTGRES_URL}
#: ``@on_both_databases``: the test runs on MariaDB and on PostgreSQL (its ``database``
#: parameter overrides the fixture, whose default is MariaDB).
on_both_databases = pytest.mark.parametrize("database", list(DATABASE_URLS))
APP_TEMPLATE = Path(__file__).parent / "apps" / "chaos_app.py"

#: Short leases so that recovery happens within a test (heartbeat <= lease / 3).
RUNNER_DEFAULTS: tuple[str, ...] = (
    "--lease",
    "2",
    "--heartbeat",
    "0.5",
    "--reclaim-period",
    "0.5",
    "--sweep-period",
    "1",
    "--sweep-grace",
    "1",
)

FINAL = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


def now_us() -> int:
    return time.time_ns() // 1000


def hexid(n: int = 10) -> str:
    return uuid.uuid4().hex[:n]


# -- a TCP relay for SQL proxies ------------------------------------------------------------

Pair = tuple[asyncio.StreamWriter, asyncio.StreamWriter]


async def relay(
    cr: asyncio.StreamReader,
    cw: asyncio.StreamWriter,
    target: tuple[str, int],
    down: Callable[[], bool],
    conns: set[Pair],
) -> None:
    """Serve one client connection of a proxy: refused (aborted) while ``down()``,
    otherwise piped both ways to ``target`` until either side ends; the pair sits in
    ``conns`` meanwhile, so that the proxy can cut every open connection."""
    if down():
        cw.transport.abort()
        return
    try:
        sr, sw = await asyncio.open_connection(*target)
    except OSError:
        cw.transport.abort()  # the server is down: the client sees its connection fail
        return
    if down():  # cut while connecting
        cw.transport.abort()
        sw.transport.abort()
        return
    pair = (cw, sw)
    conns.add(pair)

    async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()

    ups = asyncio.ensure_future(pump(cr, sw))
    downs = asyncio.ensure_future(pump(sr, cw))
    try:
        await asyncio.wait({ups, downs}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (ups, downs):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        conns.discard(pair)
        for w in pair:
            w.transport.abort()


# -- Redis servers of our own ------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on a free port with its own temp dir and no persistence."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 2)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self, timeout: float = 10.0) -> RedisServer:
        assert not self.running(), "already running"
        self.starts += 1
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.dir)),
                    *("--daemonize", "no", "--protected-mode", "no"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        c = self.client(socket_timeout=0.5)
        try:
            while True:
                try:
                    if c.ping():
                        return self
                except redis.ConnectionError:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.dir / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server on {self.port} did not start:\n{log_text}")
                time.sleep(0.02)
        finally:
            c.close()

    def _reap(self, timeout: float = 10.0) -> None:
        assert self.proc is not None
        self.proc.wait(timeout)

    def stop(self) -> None:
        """``SHUTDOWN NOSAVE`` (fast, nothing written); SIGKILL if it does not exit."""
        if not self.running():
            return
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGCONT)
        # A raw socket: redis-py's shutdown() retries the connection it just lost (~4 s).
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"SHUTDOWN NOSAVE\r\n")
                with contextlib.suppress(OSError):
                    s.recv(100)
        except OSError:
            pass
        try:
            self._reap(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def restart(self) -> None:
        """Stop (if running) and start again, empty, on the same port."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.kill()


# -- the outside witness ------------------------------------------------------------------


@dataclass
class Execution:
    """One run of a handler, as the handler itself recorded it."""

    job: str
    pid: int
    runner: str
    attempt: int
    token: str
    task: str
    start_us: int
    end_us: int | None = None
    completed: bool = False
    """The handler returned (``e``), as opposed to raising or being cancelled (``x``)."""


@dataclass
class Verdict:
    expected: int
    statuses: Counter[str]
    lost: list[str]
    """Expected jobs missing from SQL, final but not in the wanted status, or ``done``
    without any completed execution."""
    duplicated: list[str]
    """Jobs whose handler ran to completion more than once."""
    reruns: list[str]
    """Jobs whose handler started more than once (completed or not)."""
    concurrent: list[tuple[str, int, int]]
    """(job, pid, pid): two executions of one job overlapping in time."""
    unexpected: list[str]
    """Executions of ids that were never enqueued."""
    stuck: list[str]
    """Expected jobs not in a final state."""
    starts: Counter[str]
    completions: Counter[str]

    def counts(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "reruns": len(self.reruns),
            "concurrent": len(self.concurrent),
            "unexpected": len(self.unexpected),
            "stuck": len(self.stuck),
        }

    @property
    def report(self) -> str:
        def some(xs: Iterable[Any]) -> str:
            xs = list(xs)
            return ", ".join(map(str, xs[:5])) + (" ..." if len(xs) > 5 else "")

        lines = [
            f"{self.expected} expected jobs; SQL statuses {dict(self.statuses)}; "
            f"{sum(self.starts.values())} executions; {self.counts()}"
        ]
        for name in ("lost", "stuck", "duplicated", "reruns", "concurrent", "unexpected"):
            items = getattr(self, name)
            if items:
                lines.append(f"  {name}: {some(items)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report


class Checker:
    """Executions recorded by the handlers into a list on the shared (undisturbed) Redis."""

    def __init__(self, key: str | None = None, url: str = SHARED_REDIS_URL) -> None:
        self.url = url
        self.key = key or f"aqc_chk_{hexid()}"
        self._r = redis.Redis.from_url(url, socket_timeout=10)
        self._seen: list[dict[str, Any]] = []

    @property
    def env(self) -> dict[str, str]:
        """What the app module needs to record into this checker."""
        return {"AQC_CHECK_URL": self.url, "AQC_CHECK_KEY": self.key}

    def events(self) -> list[dict[str, Any]]:
        """Every event so far (the list is append-only: only new ones are read)."""
        new = self._r.lrange(self.key, len(self._seen), -1)
        self._seen.extend(json.loads(x) for x in new)
        return list(self._seen)

    def open_on(self, pid: int) -> set[str]:
        """Jobs whose handler runs right now in process ``pid`` (started, not ended)."""
        return {e.job for e in self.executions() if e.pid == pid and e.end_us is None}

    def executions(self) -> list[Execution]:
        runs: dict[tuple[str, str, int], Execution] = {}
        for ev in self.events():
            k = (ev["j"], ev["t"], ev["p"])
            if ev["k"] == "s":
                runs[k] = Execution(ev["j"], ev["p"], ev["r"], ev["a"], ev["t"], ev["n"], ev["ts"])
            elif k in runs:
                runs[k].end_us = ev["ts"]
                runs[k].completed = ev["k"] == "e"
        return sorted(runs.values(), key=lambda e: e.start_us)

    def by_job(self) -> dict[str, list[Execution]]:
        out: dict[str, list[Execution]] = {}
        for e in self.executions():
            out.setdefault(e.job, []).append(e)
        return out

    def classify(
        self,
        expected_ids: Iterable[str],
        sql_statuses: Mapping[str, JobStatus | str],
        *,
        deaths: Mapping[int, int] | None = None,
        want: JobStatus | Mapping[str, JobStatus] = JobStatus.DONE,
    ) -> Verdict:
        """``deaths``: pid -> wall-clock microseconds when that process died (ends the
        executions it left open). ``want``: the final status each job should have."""
        expected = list(dict.fromkeys(expected_ids))
        exp_set = set(expected)
        deaths = deaths or {}
        runs = self.by_job()
        starts = Counter({j: len(es) for j, es in runs.items()})
        completions = Counter({j: sum(e.completed for e in es) for j, es in runs.items()})
        statuses = {j: JobStatus(s) for j, s in sql_statuses.items()}
        lost, stuck = [], []
        for j in expected:
            st = statuses.get(j)
            wanted = want if isinstance(want, JobStatus) else want.get(j, JobStatus.DONE)
            if st is None:
                lost.append(j)
            elif st not in FINAL:
                stuck.append(j)
            elif st is not wanted or (st is JobStatus.DONE and completions[j] == 0):
                lost.append(j)
        concurrent: list[tuple[str, int, int]] = []
        for j, es in runs.items():
            for i, a in enumerate(es):
                end = a.end_us if a.end_us is not None else deaths.get(a.pid)
                for b in es[i + 1 :]:
                    if end is None or b.start_us < end:
                        concurrent.append((j, a.pid, b.pid))
        return Verdict(
            expected=len(expected),
            statuses=Counter(str(statuses.get(j, "missing")) for j in expected),
            lost=lost,
            duplicated=sorted(j for j, n in completions.items() if n > 1),
            reruns=sorted(j for j, n in starts.items() if n > 1),
            concurrent=concurrent,
            unexpected=sorted(j for j in runs if j not in exp_set),
            stuck=stuck,
            starts=starts,
            completions=completions,
        )

    def clear(self) -> None:
        self._r.delete(self.key)
        self._seen.clear()

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self._r.delete(self.key)
        self._r.close()


# -- runner processes ---------------------------------------------------------------------

PYCACHE = Path(tempfile.gettempdir()) / f"aqueue-chaos-pycache-{os.getuid()}"


def clean_env(**extra: str) -> dict[str, str]:
    """A subprocess environment without outside AQUEUE_*/AQC_* settings, caching bytecode
    outside the source tree (each fresh interpreter would otherwise compile aqueue and
    SQLAlchemy anew, ~2 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AQUEUE_", "AQC_", "AQT_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    PYCACHE.mkdir(exist_ok=True)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.update(extra)
    return env


_RUNNER_STARTED = re.compile(r"runner (\S+) started:")
_SPAWNED: list[RunnerProcess] = []


class RunnerProcess(subprocess.Popen[bytes]):
    """A runner subprocess (own process group). A thread notes the wall-clock time at
    which it exits (``exited_at_us``) without reaping it (pidfd)."""

    def __init__(self, args: list[str], *, name: str, log_path: Path, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self.name = name
        self.log_path = log_path
        self.exited_at_us: int | None = None
        self.exited = threading.Event()
        fd = os.pidfd_open(self.pid)
        threading.Thread(target=self._watch, args=(fd,), daemon=True).start()

    def _watch(self, fd: int) -> None:
        try:
            select.select([fd], [], [])
        finally:
            self.exited_at_us = now_us()
            os.close(fd)
            self.exited.set()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 4000) -> str:
        return self.log()[-n:]

    def runner_id(self) -> str | None:
        m = _RUNNER_STARTED.search(self.log())
        return m.group(1) if m else None

    def alive(self) -> bool:
        return self.poll() is None

    def kill9(self) -> int:
        """SIGKILL the whole process group; returns the wall-clock time (us) of the kill."""
        t = now_us()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.wait(10)
        self.exited.wait(5)
        return t

    def term(self) -> None:
        self.send_signal(signal.SIGTERM)

    def finish(self, timeout: float) -> int:
        """Wait for the exit; returns the exit code (fails with the log tail on timeout)."""
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout}s; log:\n{self.tail()}"
            ) from None


def spawn_runner(
    app_dir: Path,
    env: Mapping[str, str],
    *args: str,
    name: str | None = None,
    log_dir: Path | None = None,
) -> RunnerProcess:
    """``python -m aqueue run app:queue`` + :data:`RUNNER_DEFAULTS` + ``args`` (a later
    option wins) in ``app_dir``, in its own process group, stdout+stderr to a log file."""
    name = name or f"runner-{len(_SPAWNED)}-{hexid(4)}"
    log_dir = log_dir or Path(app_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "aqueue", "run", "app:queue", *RUNNER_DEFAULTS, *args]
    with log_path.open("wb") as out:
        p = RunnerProcess(
            cmd,
            name=name,
            log_path=log_path,
            cwd=app_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _SPAWNED.append(p)
    return p


def kill_spawned() -> None:
    """SIGKILL every runner process group this module started (test teardown)."""
    while _SPAWNED:
        p = _SPAWNED.pop()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(10)


def deaths(procs: Iterable[RunnerProcess]) -> dict[int, int]:
    return {p.pid: p.exited_at_us for p in procs if p.exited_at_us is not None}


# -- waiting ------------------------------------------------------------------------------


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str = "condition",
    *,
    procs: Iterable[RunnerProcess] = (),
    interval: float = 0.05,
) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail after ``timeout`` seconds, or
    at once if one of ``procs`` (expected to keep running) exited."""
    procs = tuple(procs)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(
                    f"{p.name} exited with {p.returncode} while waiting for {what}; "
                    f"log:\n{p.tail()}"
                )
        if time.monotonic() > deadline:
            # The runners' own words are what tells a slow machine from a wrong one.
            logs = "".join(f"\n--- {p.name}:\n{p.tail(1500)}" for p in procs)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{logs}")
        await asyncio.sleep(interval)


async def drain(
    env: ChaosEnv,
    n: int,
    timeout: float,
    *,
    procs: Iterable[RunnerProcess] = (),
) -> float:
    """Wait until the queue holds ``n`` jobs, none ``todo``/``running``; returns seconds."""
    started = time.monotonic()

    async def finished() -> bool:
        counts = await env.counts()
        unfinished = counts.get("todo", 0) + counts.get("running", 0)
        return unfinished == 0 and sum(counts.values()) >= n

    try:
        await wait_for(finished, timeout, f"{n} jobs final", procs=procs, interval=0.1)
    except AssertionError as exc:
        logs = "\n".join(f"--- {p.name}\n{p.tail(2500)}" for p in procs)
        raise AssertionError(f"{exc}; SQL: {await env.counts()}\n{logs}") from None
    return time.monotonic() - started


# -- one isolated setup --------------------------------------------------------------------


@dataclass
class ChaosEnv:
    """An app dir (copy of ``apps/chaos_app.py``) with its own queue, table, key prefix and
    checker. The in-process :attr:`queue` enqueues; runners are subprocesses."""

    root: Path
    redis_url: str
    database_url: str = MYSQL_URL
    queue_name: str = field(default_factory=lambda: f"q_{hexid(8)}")
    table: str = field(default_factory=lambda: f"t_{hexid()}")
    prefix: str = field(default_factory=lambda: f"aqc_{hexid()}")
    checker: Checker = field(default_factory=Checker)
    procs: list[RunnerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app_dir = self.root / f"app_{self.prefix}"
        self.app_dir.mkdir(parents=True)
        shutil.copy(APP_TEMPLATE, self.app_dir / "app.py")
        self.queue = Queue(
            self.queue_name,
            redis_url=self.redis_url,
            database_url=self.database_url,
            table=self.table,
            key_prefix=self.prefix,
        )
        self._engine: AsyncEngine | None = None

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.queue_name}}}"

    def env(self, **extra: str) -> dict[str, str]:
        # The app first, then the test's own PYTHONPATH (e.g. a snapshot of src/ taken to
        # test while the tree changes): the runners import what the test imports.
        inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return clean_env(
            AQC_QUEUE=self.queue_name,
            AQC_REDIS_URL=self.redis_url,
            AQC_DATABASE_URL=self.database_url,
            AQC_TABLE=self.table,
            AQC_PREFIX=self.prefix,
            PYTHONPATH=os.pathsep.join([str(self.app_dir), *inherited]),
            **self.checker.env,
            **extra,
        )

    def spawn(self, *args: str, name: str | None = None, **extra_env: str) -> RunnerProcess:
        """A runner of this app (see :func:`spawn_runner`); ``extra_env`` e.g.
        ``AQUEUE_TEST_CRASH_AT="after_handler:20"``."""
        p = spawn_runner(self.app_dir, self.env(**extra_env), *args, name=name)
        self.procs.append(p)
        return p

    def deaths(self) -> dict[int, int]:
        return deaths(self.procs)

    # -- producer side

    async def enqueue_work(self, n: int, sleep_s: float = 0.05, start: int = 0) -> list[str]:
        jobs = await self.queue.enqueue_many([("work", (start + i, sleep_s), {}) for i in range(n)])
        return [j.id for j in jobs]

    # -- SQL (read directly, never through anything the test disturbs)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_async_engine(self.database_url, pool_size=2)
        return self._engine

    async def sql(self, query: str, **params: Any) -> list[sa.Row[Any]]:
        async with self.engine.connect() as conn:
            res = await conn.execute(sa.text(query.replace("{t}", self.table)), params)
            rows = list(res.fetchall())
            await conn.commit()
            return rows

    async def counts(self) -> dict[str, int]:
        rows = await self.sql(
            "SELECT status, COUNT(*) FROM {t} WHERE queue = :q GROUP BY status",
            q=self.queue_name,
        )
        return {str(s): int(n) for s, n in rows}

    async def statuses(self) -> dict[str, JobStatus]:
        rows = await self.sql("SELECT id, status FROM {t} WHERE queue = :q", q=self.queue_name)
        return {r[0]: JobStatus(r[1]) for r in rows}

    async def rows(self) -> dict[str, dict[str, Any]]:
        rows = await self.sql(
            "SELECT id, status, attempts, stalls, lease_owner, lease_token FROM {t} "
            "WHERE queue = :q",
            q=self.queue_name,
        )
        keys = ("status", "attempts", "stalls", "lease_owner", "lease_token")
        return {r[0]: dict(zip(keys, r[1:], strict=True)) for r in rows}

    async def running_of(self, runner_id: str) -> set[str]:
        rows = await self.sql(
            "SELECT id FROM {t} WHERE lease_owner = :o AND status = 'running'", o=runner_id
        )
        return {r[0] for r in rows}

    async def running_count(self) -> int:
        return (await self.counts()).get("running", 0)

    # -- verdict

    async def verdict(self, expected_ids: Iterable[str], **kwargs: Any) -> Verdict:  # kwargs: want=
        return self.checker.classify(
            expected_ids, await self.statuses(), deaths=self.deaths(), **kwargs
        )

    async def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.queue.close(), 10)
            if self._engine is not None:
                await self._engine.dispose()
            store = Store(self.database_url, table=self.table)
            try:
                await store.drop_schema()
            finally:
                await store.close()
            self._delete_keys()
        finally:
            self.checker.close()

    def _delete_keys(self) -> None:
        """Delete this env's keys from its Redis when that one is still up (it matters for
        the shared Redis; a test's own server is killed anyway)."""
        try:
            r = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=1)
        except ValueError:
            return
        try:
            keys = list(r.scan_iter(match=f"{{{self.prefix}:*"))
            if keys:
                r.delete(*keys)
        except redis.RedisError:
            pass
        finally:
            r.close()


@pytest.fixture
def database() -> str:
    """The SQL server of the test's :class:`ChaosEnv`: MariaDB, unless the test is
    parametrized over ``database`` (:data:`on_both_databases`)."""
    return "mariadb"


@pytest.fixture
async def chaos(tmp_path: Path, database: str) -> AsyncIterator[Callable[..., Awaitable[ChaosEnv]]]:
    """``env = await chaos(redis_url)``: a fresh :class:`ChaosEnv` on the ``database``
    fixture's server, cleaned up after."""
    made: list[ChaosEnv] = []

    async def make(redis_url: str, **kwargs: Any) -> ChaosEnv:
        kwargs.setdefault("database_url", DATABASE_URLS[database])
        env = ChaosEnv(tmp_path, redis_url, **kwargs)
        made.append(env)
        return env

    try:
        yield make
    finally:
        for env in made:
            await env.close()
        kill_spawned()
