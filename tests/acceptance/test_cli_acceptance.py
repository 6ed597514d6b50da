"""Acceptance tests: the real ``python -m aqueue`` CLI in subprocesses.

Each test writes an app module into its own temp dir and runs the CLI there against the
shared Redis and a shared SQL server (MariaDB; the tests that take ``sql_url`` from
``SQL_URLS`` run on PostgreSQL too), isolated by a unique queue name, table and key prefix
(all cleaned up afterwards). Synchronisation is by polling with deadlines.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

from aqueue import JobStatus, Queue
from aqueue._embedded import embedded_socket_path, stop_embedded_redis
from aqueue._store.schema import SCHEMA_VERSION
from aqueue._store.store import Store

pytestmark = pytest.mark.acceptance

REDIS_URL = os.environ.get("AQUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MYSQL_URL = os.environ.get("AQUEUE_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
POSTGRES_URL = os.environ.get(
    "AQUEUE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SQL_URLS = [
    pytest.param(MYSQL_URL, id="mysql", marks=pytest.mark.mysql),
    pytest.param(POSTGRES_URL, id="postgres"),
]
"""``@pytest.mark.parametrize("sql_url", SQL_URLS)``: a test on both server stores."""
APPS = Path(__file__).parent / "apps"


# -- helpers ---------------------------------------------------------------------------


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    procs: tuple[subprocess.Popen[bytes], ...] = (),
    interval: float = 0.05,
) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail after ``timeout`` seconds, or
    at once if one of ``procs`` (processes expected to keep running) has exited."""
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
                    f"process {p.args!r} exited with {p.returncode} while waiting for {what}"
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


_pycache: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Let the subprocesses cache bytecode (outside the source tree): with
    PYTHONDONTWRITEBYTECODE each one would compile aqueue and SQLAlchemy anew (~2 s)."""
    _pycache.append(tmp_path_factory.mktemp("pycache"))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: no AQUEUE_* settings from outside, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AQUEUE_", "AQT_"))}
    if _pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(_pycache[-1])
    env.update(extra)
    return env


async def drop_table(url: str, table: str) -> None:
    store = Store(url, table=table)
    try:
        await store.drop_schema()
    finally:
        await store.close()


@dataclass
class Procs:
    """Starts CLI subprocesses (each in its own session) and kills leftovers."""

    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, name: str, *args: str, cwd: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        self.logs.mkdir(exist_ok=True)
        with (
            (self.logs / f"{name}.out").open("wb") as out,
            (self.logs / f"{name}.err").open("wb") as err,
        ):
            p = subprocess.Popen(
                [sys.executable, *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.started.append(p)
        return p

    def cli(self, name: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return self.spawn(name, "-m", "aqueue", *args, cwd=cwd, env=env)

    def output(self, name: str) -> tuple[str, str]:
        return (
            (self.logs / f"{name}.out").read_text(errors="replace"),
            (self.logs / f"{name}.err").read_text(errors="replace"),
        )

    def finish(self, p: subprocess.Popen[bytes], name: str, timeout: float) -> str:
        """Wait for ``p`` to exit with 0 within ``timeout``; return its stdout."""
        try:
            code = p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{name} still running after {timeout}s; stderr:\n{self.output(name)[1][-3000:]}"
            ) from None
        out, err = self.output(name)
        assert code == 0, f"{name} exited with {code}; stderr:\n{err[-3000:]}"
        assert "Traceback" not in err, err[-3000:]
        return out

    def kill_all(self) -> None:
        for p in self.started:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)
            else:
                # The group may still hold grandchildren (runner processes).
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path / "logs")
    try:
        yield p
    finally:
        p.kill_all()


@dataclass
class App:
    """A copy of ``apps/basic_app.py`` as ``<dir>/app.py`` with its own names."""

    dir: Path
    db_url: str
    queue_name: str
    table: str
    prefix: str
    env: dict[str, str]
    redis: redis.Redis
    tables: list[str]
    _modules: list[Queue] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}:{self.queue_name}}}"

    def load(self, **overrides: str) -> ModuleType:
        """Import the app module in this process (same config as the subprocesses)."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update({**self.env, **overrides})
        try:
            name = f"aqt_app_{uuid.uuid4().hex[:8]}"
            spec = importlib.util.spec_from_file_location(name, self.dir / "app.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self._modules.append(module.queue)
        return module

    def ready(self) -> list[bytes]:
        return list(self.redis.lrange(f"{self.tag}:ready", 0, -1))

    def working_lists(self) -> dict[str, int]:
        keys = self.redis.scan_iter(match=f"{self.tag}:working:*")
        return {k.decode(): int(self.redis.llen(k)) for k in keys}

    def pids(self) -> set[int]:
        return {int(p) for p in self.redis.smembers(f"{self.prefix}:pids")}

    def runs(self) -> list[str]:
        return [r.decode() for r in self.redis.lrange(f"{self.prefix}:runs", 0, -1)]


@pytest.fixture
def sql_url() -> str:
    """The jobs' database of ``app`` (MariaDB unless a test parametrizes it)."""
    return MYSQL_URL


@pytest.fixture
async def app(tmp_path: Path, sql_url: str) -> AsyncIterator[App]:
    hexid = uuid.uuid4().hex
    table = f"t_{hexid[:10]}"
    prefix = f"aqt_{hexid[10:20]}"
    queue_name = f"q_{hexid[20:28]}"
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(APPS / "basic_app.py", app_dir / "app.py")
    env = {
        "AQT_QUEUE": queue_name,
        "AQT_REDIS_URL": REDIS_URL,
        "AQT_DATABASE_URL": sql_url,
        "AQT_TABLE": table,
        "AQT_PREFIX": prefix,
    }
    r = redis.Redis.from_url(REDIS_URL)
    a = App(app_dir, sql_url, queue_name, table, prefix, env, r, [table])
    try:
        yield a
    finally:
        try:
            for q in a._modules:
                await q.close()
            for t in a.tables:
                await drop_table(sql_url, t)
            for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
                keys = list(r.scan_iter(match=pattern))
                if keys:
                    r.delete(*keys)
        finally:
            r.close()


def subprocess_env(app: App, **extra: str) -> dict[str, str]:
    return clean_env(**app.env, PYTHONPATH=str(app.dir), **extra)


# -- 1. burst drains a backlog -----------------------------------------------------------


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_burst_run_drains_300_jobs(app: App, procs: Procs) -> None:
    mod = app.load()
    n = 300
    jobs = await mod.queue.enqueue_many([(mod.add, (i, i), {}) for i in range(n)])
    assert len({j.id for j in jobs}) == n
    assert len(app.ready()) == n

    p = procs.cli(
        "runner",
        *("run", "app:queue", "--burst", "--concurrency", "20"),
        cwd=app.dir,
        env=subprocess_env(app),
    )
    procs.finish(p, "runner", timeout=60)

    for i, job in enumerate(jobs):
        rec = await job.info()
        assert rec.status is JobStatus.DONE, (job.id, rec.status, rec.error)
        assert rec.attempts == 1
        assert await job.result(timeout=1) == 2 * i
    counts = await mod.queue.counts()
    assert counts[JobStatus.DONE] == n
    assert sum(counts.values()) == n
    assert app.ready() == []
    assert not any(app.working_lists().values())


# -- 2. bad app paths ---------------------------------------------------------------------

BROKEN = {
    "broken_import.py": "raise RuntimeError('boom at import')\n",
    "broken_syntax.py": "def f(:\n",
    "broken_dep.py": "import aqt_no_such_dependency  # noqa: F401\n",
}


BAD_PATHS = [
    "nosuchmodule:queue",
    "app:nosuchattr",
    "app:not_a_queue",
    "app",
    "app:",
    ":queue",
    "app:queue.nosuchattr",
    "app:queue.name",
    "broken_import:queue",
    "broken_syntax:queue",
    "broken_dep:queue",
]
BAD_CASES = [
    *[(("run",), path) for path in BAD_PATHS],
    (("run", "--burst", "--processes", "2"), "app:not_a_queue"),
    (("db", "init"), "nosuchmodule:queue"),
    (("db", "upgrade"), "app:nosuchattr"),
    (("stats",), "app"),
]


@pytest.mark.parametrize(("command", "path"), BAD_CASES)
def test_bad_app_path_is_one_line_error(app: App, command: tuple[str, ...], path: str) -> None:
    for fname, text in BROKEN.items():
        (app.dir / fname).write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "aqueue", *command, path],
        cwd=app.dir,
        env=subprocess_env(app),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aqueue: error: "), proc.stderr
    assert proc.stdout == ""


# -- 3. graceful shutdown -------------------------------------------------------------------


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_sigterm_puts_running_jobs_back_then_they_run_once_more(
    app: App, procs: Procs
) -> None:
    mod = app.load()
    jobs = [await mod.slow.enqueue(i) for i in range(5)]
    ids = {j.id for j in jobs}

    runner = procs.cli(
        "runner",
        *("run", "app:queue", "--grace", "0.5", "--lease", "6"),
        cwd=app.dir,
        env=subprocess_env(app, AQT_SLEEP="30"),
    )

    async def all_running() -> bool:
        counts = await mod.queue.counts()
        return counts[JobStatus.RUNNING] == 5 and len(app.runs()) == 5

    await wait_for(all_running, 30, "5 running jobs", procs=(runner,))
    assert set(app.runs()) == ids

    started = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    procs.finish(runner, "runner", timeout=10)
    assert time.monotonic() - started < 8

    for job in jobs:
        rec = await job.info()
        assert rec.status is JobStatus.TODO, (job.id, rec.status)
        assert rec.attempts == 0
        assert rec.lease_owner is None
        assert rec.lease_token is None
    ready = app.ready()
    assert len(ready) == 5
    assert {json.loads(m)["id"] for m in ready} == ids
    assert not any(app.working_lists().values()), app.working_lists()

    # A second runner, with the handler now fast, runs each job exactly once more.
    second = procs.cli(
        "runner2",
        *("run", "app:queue", "--burst"),
        cwd=app.dir,
        env=subprocess_env(app, AQT_SLEEP="0"),
    )
    procs.finish(second, "runner2", timeout=30)
    assert Counter(app.runs()) == dict.fromkeys(ids, 2)
    for job in jobs:
        rec = await job.info()
        assert rec.status is JobStatus.DONE, (job.id, rec.status, rec.error)
        assert rec.attempts == 1
    assert sorted([await j.result(timeout=1) for j in jobs]) == list(range(5))
    assert app.ready() == []
    assert not any(app.working_lists().values())


# -- 4. --processes N ---------------------------------------------------------------------


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_processes_supervisor_restarts_a_killed_child(app: App, procs: Procs) -> None:
    mod = app.load()
    sup = procs.cli(
        "supervisor",
        *("run", "app:queue", "--processes", "2", "--concurrency", "20", "--grace", "2"),
        cwd=app.dir,
        env=subprocess_env(app),
    )
    first = await wait_for(lambda: len(app.pids()) >= 2, 30, "two runners", procs=(sup,))
    first = app.pids()
    assert len(first) == 2
    assert sup.pid not in first
    assert all(parent_pid(pid) == sup.pid for pid in first)

    async def all_done(queue: Queue, n: int) -> bool:
        return (await queue.counts())[JobStatus.DONE] == n

    jobs = await mod.queue.enqueue_many([(mod.add, (i, 1), {}) for i in range(200)])
    await wait_for(lambda: all_done(mod.queue, 200), 30, "200 jobs done", procs=(sup,))
    assert [await j.result(timeout=1) for j in jobs] == [i + 1 for i in range(200)]

    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    replacement = await wait_for(
        lambda: app.pids() - first, 20, "a replacement runner process", procs=(sup,)
    )
    assert len(replacement) == 1
    (new_pid,) = replacement
    assert parent_pid(new_pid) == sup.pid
    assert not pid_alive(victim)

    more = await mod.queue.enqueue_many([(mod.add, (i, 2), {}) for i in range(50)])
    await wait_for(lambda: all_done(mod.queue, 250), 30, "50 more jobs done", procs=(sup,))
    assert [await j.result(timeout=1) for j in more] == [i + 2 for i in range(50)]

    sup.send_signal(signal.SIGTERM)
    try:
        code = sup.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError(procs.output("supervisor")[1][-3000:]) from None
    assert code == 0, procs.output("supervisor")[1][-3000:]
    everyone = app.pids()
    assert everyone == first | replacement
    await wait_for(lambda: not any(pid_alive(pid) for pid in everyone), 5, "no runner process left")
    err = procs.output("supervisor")[1]
    assert f"(pid {victim}) exited with -9; restarting" in err


# -- 5. the embedded default ----------------------------------------------------------------


def test_embedded_default_from_a_fresh_directory(tmp_path: Path, procs: Procs) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(APPS / "embedded_app.py", fresh / "app.py")
    shutil.copy(APPS / "embedded_enqueue.py", fresh / "enqueue.py")
    shutil.copy(APPS / "embedded_check.py", fresh / "check.py")
    env = clean_env(PYTHONPATH=str(fresh))
    home = fresh / ".aqueue"
    try:
        p = procs.spawn("enqueue", "enqueue.py", "50", cwd=fresh, env=env)
        procs.finish(p, "enqueue", timeout=30)
        ids = json.loads((fresh / "ids.json").read_text())
        assert len(set(ids)) == 50
        assert (home / "aqueue.sqlite3").is_file()

        p = procs.cli("runner", "run", "app:queue", "--burst", cwd=fresh, env=env)
        procs.finish(p, "runner", timeout=30)

        p = procs.spawn("check", "check.py", cwd=fresh, env=env)
        out = json.loads(procs.finish(p, "check", timeout=30))
        assert out["results"] == [i * i for i in range(50)]
        assert out["counts"]["done"] == 50
        assert sum(out["counts"].values()) == 50
        assert embedded_socket_path(home).exists()

        p = procs.cli("stop", "embedded", "stop", cwd=fresh, env=env)
        out = procs.finish(p, "stop", timeout=30)
        assert out == f"stopped the embedded Redis under {home.resolve()}\n"
        p = procs.cli("stop_again", "embedded", "stop", cwd=fresh, env=env)
        out = procs.finish(p, "stop_again", timeout=30)
        assert out == f"no embedded Redis running under {home.resolve()}\n"
    finally:
        stop_embedded_redis(home)


# -- 6. db init / upgrade, stats, status --------------------------------------------------


STATS_LINE = re.compile(r"^  (\w+)\s+(\d+)$")


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_db_init_upgrade_stats_and_status(app: App, procs: Procs) -> None:
    env = subprocess_env(app)

    def cli(name: str, *args: str, extra: dict[str, str] | None = None) -> str:
        p = procs.cli(name, *args, cwd=app.dir, env={**env, **(extra or {})})
        return procs.finish(p, name, timeout=30)

    table, v = app.table, SCHEMA_VERSION
    assert cli("init", "db", "init", "app:queue") == f"table {table}: schema version {v}\n"
    assert cli("init2", "db", "init", "app:queue") == f"table {table}: schema version {v}\n"
    assert cli("upgrade", "db", "upgrade", "app:queue") == (
        f"table {table}: schema version {v} -> {v}\n"
    )
    # `db upgrade` on a table that does not exist yet creates it.
    other = f"t_{uuid.uuid4().hex[:10]}"
    app.tables.append(other)
    out = cli("upgrade_fresh", "db", "upgrade", "app:queue", extra={"AQT_TABLE": other})
    assert out == f"table {other}: schema version 0 -> {v}\n"
    assert cli("init_other", "db", "init", "app:queue", extra={"AQT_TABLE": other}) == (
        f"table {other}: schema version {v}\n"
    )

    mod = app.load()
    done = [await mod.add.enqueue(i, 10) for i in range(3)]
    cli("runner", "run", "app:queue", "--burst")
    todo = [await mod.add.enqueue(i, 20) for i in range(2)]
    await mod.add.options(delay=600).enqueue(0, 30)

    out = cli("stats", "stats", "app:queue")
    lines = out.splitlines()
    assert lines[0] == f"queue {app.queue_name}"
    counts = {m[1]: int(m[2]) for line in lines if (m := STATS_LINE.match(line))}
    assert counts == {
        "waiting": 0,
        "todo": 3,
        "running": 0,
        "done": 3,
        "failed": 0,
        "cancelled": 0,
    }
    assert lines[-1] == "  redis ready 2, delayed 1"

    out = cli("status", "status", "app:queue", done[0].id, todo[0].id, "no-such-job")
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{done[0].id}  done  task=add attempts=1/")
    assert lines[1].startswith(f"{todo[0].id}  todo  task=add attempts=0/")
    assert lines[2].startswith("no-such-job  ")
