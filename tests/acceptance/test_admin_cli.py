"""Acceptance tests of the operators' CLI (issue 19 item 2): ``jobs list``/``jobs show``,
``retry``, ``cancel``, ``purge``, ``runners``, ``schedules``, ``top --once`` and
``health``, each the real ``python -m aqueue`` in a subprocess, on MariaDB and
PostgreSQL, with the shared Redis.

The app is ``admin_app.py`` below, written next to the copy of ``basic_app.py`` that
the ``app`` fixture of ``test_cli_acceptance`` makes (its own queue, table and key
prefix, cleaned up afterwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from aqueue import JobStatus
from aqueue._cron import tick_job_id

from .test_cli_acceptance import (
    SQL_URLS,
    App,
    Procs,
    _bytecode_cache,
    app,
    procs,
    sql_url,
    subprocess_env,
    wait_for,
)

__all__ = ["_bytecode_cache", "app", "procs", "sql_url"]  # fixtures, used by name

pytestmark = pytest.mark.acceptance

ADMIN_APP = '''
import os

from aqueue import Queue

queue = Queue(
    os.environ["AQT_QUEUE"],
    redis_url=os.environ["AQT_REDIS_URL"],
    database_url=os.environ["AQT_DATABASE_URL"],
    table=os.environ["AQT_TABLE"],
    key_prefix=os.environ["AQT_PREFIX"],
)


@queue.task
async def add(a: int, b: int) -> int:
    return a + b


@queue.task(retries=0)
async def boom(tag: str) -> str:
    """Fails until the environment says the bug is fixed."""
    if os.environ.get("AQT_FIXED"):
        return tag
    raise ValueError(f"boom {tag}")


@queue.periodic(every=86400)
async def daily() -> str:
    return "tick"


@queue.cron("0 3 * * *")
async def nightly() -> str:
    return "tick"
'''

HOSTILE = "<script>alert(1)</script> [bold red]x[/] \x1b[31mred"


def cli(
    app: App, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aqueue ARGS`` on the admin app; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "aqueue", *args],
        cwd=app.dir,
        env={**subprocess_env(app, COLUMNS="250"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(app: App, *args: str, env: dict[str, str] | None = None) -> str:
    p = cli(app, *args, env=env)
    assert p.returncode == 0, (args, p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p.stdout


def doc(app: App, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(app, *args, "--json", env=env))


def run_burst(app: App, procs: Procs, name: str, **env: str) -> None:
    p = procs.cli(
        name,
        *("run", "admin_app:queue", "--burst"),
        cwd=app.dir,
        env=subprocess_env(app, **env),
    )
    procs.finish(p, name, timeout=60)


@pytest.fixture
def admin(app: App) -> App:
    (app.dir / "admin_app.py").write_text(ADMIN_APP)
    return app


Q = "admin_app:queue"


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_list_show_retry_by_filter(admin: App, procs: Procs) -> None:
    q = _admin_queue(admin)
    adds = [await q.enqueue("add", i, 1) for i in range(3)]
    booms = [await q.enqueue("boom", tag) for tag in ("one", HOSTILE)]
    run_burst(admin, procs, "runner1")

    failed = doc(admin, "jobs", "list", Q, "--status", "failed")
    assert {j["id"] for j in failed["jobs"]} == {b.id for b in booms}
    assert failed["next_before"] is None
    for j in failed["jobs"]:
        assert "lease_token" not in j
        assert j["error"]["type"] == "ValueError"
        assert "Traceback" in j["error"]["traceback"]
    both = doc(admin, "jobs", "list", Q, "--status", "failed", "--status", "done")
    assert len(both["jobs"]) == 5

    # Keyset pages, newest first (by id, descending: ids are in creation order to the
    # millisecond, so jobs enqueued within one may come in any order): 2, then the last.
    newest_first = sorted((a.id for a in adds), reverse=True)
    page1 = doc(admin, "jobs", "list", Q, "--task", "add", "--limit", "2")
    ids1 = [j["id"] for j in page1["jobs"]]
    assert ids1 == newest_first[:2]
    assert page1["next_before"] == newest_first[1]
    page2 = doc(admin, "jobs", "list", Q, "--task", "add", "--limit", "2", "--before", ids1[-1])
    assert [j["id"] for j in page2["jobs"]] == newest_first[2:]
    assert page2["next_before"] is None

    assert [j["id"] for j in doc(admin, "jobs", "list", Q, "--text", "boom one")["jobs"]] == [
        booms[0].id
    ]
    assert [j["id"] for j in doc(admin, "jobs", "list", Q, "--id", adds[1].id)["jobs"]] == [
        adds[1].id
    ]
    assert len(doc(admin, "jobs", "list", Q, "--since", "1h")["jobs"]) == 5
    assert doc(admin, "jobs", "list", Q, "--until", "1h")["jobs"] == []
    assert doc(admin, "jobs", "list", Q, "--since", "2000-01-01T00:00:00Z", "--until", "now")[
        "jobs"
    ]

    # People's table: the hostile argument is shown literally, minus its escape code.
    table = ok(admin, "jobs", "list", Q, "--status", "failed")
    assert booms[1].id in table and "ValueError: boom" in table
    assert "[bold red]x[/]" in table and "\x1b" not in table

    shown = ok(admin, "jobs", "show", Q, booms[1].id)
    assert "ValueError" in shown and "traceback:" in shown and "Traceback (most recent" in shown
    assert 'boom("<script>alert(1)</script> [bold red]x[/] \\u001b[31mred")' in shown
    assert "\x1b" not in shown
    assert "token" not in shown
    one = doc(admin, "jobs", "show", Q, booms[0].id)
    assert one["status"] == "failed" and "lease_token" not in one
    assert one["args"] == ["one"] and one["kwargs"] == {}
    missing = cli(admin, "jobs", "show", Q, "no-such-job")
    assert missing.returncode == 1 and "no job no-such-job" in missing.stderr

    # retry by filter: a dry run changes nothing; then the fixed code runs them.
    dry = doc(admin, "retry", Q, "--status", "failed", "--dry-run")
    assert dry == {"action": "retry", "dry_run": True, "matched": 2, "would": 2}
    assert (await booms[0].info()).status is JobStatus.FAILED
    assert doc(admin, "retry", Q, "--status", "failed") == {
        "action": "retry",
        "dry_run": False,
        "changed": 2,
    }
    assert (await booms[0].info()).status is JobStatus.TODO
    run_burst(admin, procs, "runner2", AQT_FIXED="1")
    for b, tag in zip(booms, ("one", HOSTILE), strict=True):
        rec = await b.info()
        assert rec.status is JobStatus.DONE, rec
        assert await b.result(timeout=5) == tag
    # by id, plain text; an unknown id is reported, in JSON too
    assert ok(admin, "retry", Q, adds[0].id) == "retried 1 job(s)\n"
    unknown = cli(admin, "retry", Q, adds[1].id, "nope", "--dry-run", "--json")
    assert unknown.returncode == 1 and "no job nope" in unknown.stderr
    assert json.loads(unknown.stdout) == {
        "action": "retry",
        "dry_run": True,
        "matched": 1,
        "would": 1,
        "not_found": ["nope"],
    }
    await q.close()


def _admin_queue(app: App) -> Any:
    """The admin app's queue, imported in this process with the test's settings."""
    import importlib.util
    import uuid

    saved = {k: os.environ.get(k) for k in app.env}
    os.environ.update(app.env)
    try:
        spec = importlib.util.spec_from_file_location(
            f"aqt_admin_{uuid.uuid4().hex[:8]}", app.dir / "admin_app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    app._modules.append(module.queue)
    return module.queue


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_cancel_and_purge_with_dry_runs(admin: App, procs: Procs) -> None:
    q = _admin_queue(admin)
    done = [await q.enqueue("add", i, 2) for i in range(3)]
    run_burst(admin, procs, "runner")
    later = [await q.options(delay=600).enqueue("add", i, 3) for i in range(4)]

    assert doc(admin, "cancel", Q, later[0].id, "--dry-run")["would"] == 1
    assert doc(admin, "cancel", Q, done[0].id, "--dry-run") == {
        "action": "cancel",
        "dry_run": True,
        "matched": 1,
        "would": 0,
    }
    # an id not in the queue is named on stderr (exit 1); the others are cancelled
    partly = cli(admin, "cancel", Q, later[0].id, "no-such-job")
    assert partly.returncode == 1 and partly.stdout == "cancelled 1 job(s)\n"
    assert f"aqueue: no job no-such-job in queue {admin.queue_name}" in partly.stderr
    # by filter: the three others waiting (the finished ones are not touched)
    assert doc(admin, "cancel", Q, "--task", "add", "--dry-run")["would"] == 3
    assert doc(admin, "cancel", Q, "--status", "todo", "--reason", "maintenance")["changed"] == 3
    rec = await later[3].info()
    assert rec.status is JobStatus.CANCELLED and "maintenance" in (rec.error or "")

    # purge: finished longer ago than 1 h: none; than 0 s: all seven.
    assert doc(admin, "purge", Q, "--older-than", "1h", "--dry-run")["would"] == 0
    dry = doc(admin, "purge", Q, "--older-than", "0", "--dry-run")
    assert dry["would"] == 7
    assert len(doc(admin, "jobs", "list", Q)["jobs"]) == 7
    # by filter first (the cancelled ones, with --older-than: the finished among them)
    assert (
        doc(admin, "purge", Q, "--status", "cancelled", "--older-than", "0s", "--dry-run")["would"]
        == 4
    )
    assert doc(admin, "purge", Q, "--status", "cancelled", "--limit", "2")["changed"] == 2
    assert ok(admin, "purge", Q, "--older-than", "0") == "deleted 5 job(s)\n"
    assert doc(admin, "jobs", "list", Q)["jobs"] == []


async def test_usage_errors_exit_2(admin: App) -> None:
    cases = [
        ("retry", Q),
        ("cancel", Q),
        ("purge", Q),
        ("retry", Q, "some-id", "--status", "failed"),
        ("jobs", "list", Q, "--since", "yesterday-ish"),
        ("jobs", "list", Q, "--status", "bogus"),
        ("jobs", "list", Q, "--limit", "0"),
        ("purge", Q, "--older-than", "soon"),
        ("top", Q, "--interval", "0"),
    ]
    for args in cases:
        p = cli(admin, *args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert "Error" in p.stderr or "error" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


@pytest.mark.parametrize("sql_url", SQL_URLS)
async def test_runners_schedules_top_and_health(admin: App, procs: Procs) -> None:
    q = _admin_queue(admin)
    await q.connect()  # creates the table: the probes never do

    none = cli(admin, "health", Q)
    assert none.returncode == 1 and "no runner alive" in none.stderr, none.stderr
    assert ok(admin, "health", Q, "--no-runner-required").startswith("ok: queue")
    unreachable = cli(
        admin, "health", Q, "--timeout", "3", env={"AQT_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    assert unreachable.returncode == 1
    assert "aqueue: unhealthy: redis:" in unreachable.stderr, unreachable.stderr
    no_sql = cli(admin, "health", Q, "--no-runner-required", env={"AQT_TABLE": "t_no_such_table"})
    assert no_sql.returncode == 1 and "aqueue: unhealthy: sql:" in no_sql.stderr, no_sql.stderr

    runner = procs.cli(
        "runner", "run", Q, "--heartbeat", "0.5", cwd=admin.dir, env=subprocess_env(admin)
    )
    job = await q.enqueue("add", 20, 22)
    assert await job.result(timeout=30) == 42

    def healthy() -> bool:
        return cli(admin, "health", Q).returncode == 0

    await wait_for(healthy, 30, "health to see the runner", procs=(runner,))
    report = doc(admin, "health", Q)
    assert report["ok"] and report["runners_alive"] == 1 and report["problems"] == []

    def executed() -> Any:
        rows = doc(admin, "runners", Q)["runners"]
        return rows if rows and rows[0]["executed"] == 1 else None

    rows = await wait_for(executed, 30, "the runner's counters", procs=(runner,))
    (row,) = rows
    assert row["alive"] and row["in_flight"] == 0 and row["done"] == 1 and row["failed"] == 0
    assert row["heartbeat_age"] is not None and row["heartbeat_age"] <= 5
    assert row["id"] in ok(admin, "runners", Q)

    frame = doc(admin, "top", Q, "--once")
    assert frame["queue"] == admin.queue_name and frame["counts"]["done"] == 1
    assert frame["redis_ready"] == 0 and [r["id"] for r in frame["runners"]] == [row["id"]]
    text = ok(admin, "top", Q, "--once")
    assert f"queue {admin.queue_name}" in text and "done 1" in text and row["id"] in text

    # The same frame without rich: plain text (a 'rich' that cannot be imported).
    norich = admin.dir / "norich" / "rich"
    norich.mkdir(parents=True)
    (norich / "__init__.py").write_text("raise ImportError('rich is not installed')\n")
    plain_env = {"PYTHONPATH": f"{norich.parent}{os.pathsep}{admin.dir}"}
    plain = ok(admin, "top", Q, "--once", env=plain_env)
    assert f"queue {admin.queue_name}" in plain and row["id"] in plain
    assert "runner" in plain.splitlines()[4]  # the plain table's header
    listed = ok(admin, "jobs", "list", Q, env=plain_env)
    assert job.id in listed and "\u2503" not in listed and "\u2502" not in listed

    # schedules: the next ticks, and the last run found by its tick's job id
    # (daily and nightly ticks: none falls inside a test run, but at midnight or 3 am)
    now = time.time()
    day = int(now // 86400 * 86400 * 1_000_000)
    await q.options(job_id=tick_job_id(q.name, "daily", day)).enqueue("daily")
    scheds = {s["task"]: s for s in doc(admin, "schedules", Q)["schedules"]}
    assert set(scheds) == {"daily", "nightly"}
    assert scheds["nightly"]["kind"] == "cron" and scheds["nightly"]["next_tick"].endswith(
        "T03:00:00Z"
    )
    assert scheds["daily"]["schedule"] == "every 86400s"
    assert scheds["daily"]["next_tick"].endswith("T00:00:00Z")
    last = scheds["daily"]["last_run"]
    assert last is not None and last["job_id"] == tick_job_id(q.name, "daily", day)
    assert scheds["nightly"]["last_run"] is None
    assert "every 86400s" in ok(admin, "schedules", Q)

    os.killpg(runner.pid, signal.SIGTERM)
    assert runner.wait(30) == 0
    gone = cli(admin, "health", Q)
    assert gone.returncode == 1 and "no runner alive" in gone.stderr


async def test_top_refreshes_until_ctrl_c(admin: App) -> None:
    """``top`` in a terminal (a pty): frames every --interval until SIGINT, then exit 0."""
    import pty
    import select

    q = _admin_queue(admin)
    await q.enqueue("add", 1, 2)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, its output on the pty
        os.chdir(admin.dir)
        env = subprocess_env(admin, COLUMNS="120")
        os.execve(
            sys.executable, [sys.executable, "-m", "aqueue", "top", Q, "--interval", "0.3"], env
        )
    out = b""
    try:

        def frames() -> bool:
            nonlocal out
            while select.select([fd], [], [], 0)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            return out.count(f"queue {admin.queue_name}".encode()) >= 3

        await wait_for(frames, 60, "three frames of top")
        assert b"todo 1" in out
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            assert time.monotonic() < deadline, "top did not exit on SIGINT"
            frames()
            await asyncio.sleep(0.05)
        frames()
        assert os.waitstatus_to_exitcode(done[1]) == 0, out[-2000:]
        assert b"Traceback" not in out, out[-2000:]
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    await q.close()
