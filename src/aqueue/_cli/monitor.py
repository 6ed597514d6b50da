"""Watching a queue: ``runners``, ``schedules``, ``top`` (a live view of the counts and
runners, every second, until Ctrl-C; ``--once`` prints one frame) and ``health`` (a
probe: exit 0 when SQL and Redis answer and a runner is alive)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

import click

from .._app import Queue
from .._errors import BackendError
from .common import admin, load_queue, redact, run_async
from .render import (
    ago,
    clean,
    have_rich,
    json_option,
    plain_table,
    print_json,
    print_table,
    stderr,
    text_cells,
)
from .snapshot import QueueView, RunnerRow, queue_view, runner_doc, runner_rows, schedule_docs

RUNNER_COLUMNS = ["runner", "alive", "in flight", "executed", "done", "failed", "retried", "beat"]


def _runner_cells(r: RunnerRow) -> list[Any]:
    return [
        r.id,
        "yes" if r.alive else "no",
        r.in_flight,
        r.executed,
        r.done,
        r.failed,
        r.retried,
        f"{ago(r.heartbeat_age)} ago" if r.heartbeat_age is not None else "-",
    ]


@click.command()
@click.argument("app")
@json_option
def runners(app: str, as_json: bool) -> None:
    """The runners of APP's queue: alive, jobs in flight, counters, last heartbeat."""
    queue = load_queue(app)
    rows = admin(queue, runner_rows)
    if as_json:
        print_json({"queue": queue.name, "runners": [runner_doc(r) for r in rows]})
        return
    alive = sum(r.alive for r in rows)
    title = f"queue {queue.name}: {alive} runner(s) alive of {len(rows)} known"
    print_table(title, RUNNER_COLUMNS, [_runner_cells(r) for r in rows])


@click.command()
@click.argument("app")
@json_option
def schedules(app: str, as_json: bool) -> None:
    """The cron and periodic schedules of APP: next tick, last run (UTC)."""
    queue = load_queue(app)

    async def go(q: Queue) -> list[dict[str, Any]]:
        return await schedule_docs(q, q._clock())

    docs = admin(queue, go)
    if as_json:
        print_json({"queue": queue.name, "schedules": docs})
        return
    rows = []
    for d in docs:
        last = d["last_run"]
        rows.append(
            [
                d["task"],
                d["schedule"],
                d["missed"],
                d["next_tick"],
                f"{last['tick']} {last['status']}" if last else "-",
            ]
        )
    columns = ["task", "schedule", "missed", "next tick", "last run"]
    print_table(f"queue {queue.name}: {len(docs)} schedule(s)", columns, rows)


def _frame_lines(view: QueueView) -> tuple[list[str], list[list[str]]]:
    counts = "  ".join(f"{k} {v}" for k, v in view.counts.items())
    redis = (
        f"redis ready {view.redis_ready}, delayed {view.redis_delayed}"
        if view.redis_ready is not None
        else "redis: unreachable"
    )
    alive = sum(r.alive for r in view.runners)
    head = [
        f"queue {view.queue}    {time.strftime('%H:%M:%S', time.gmtime())} UTC",
        counts,
        f"{redis}    backlog age {ago(view.backlog_age)}    runners alive {alive}",
    ]
    return [clean(line, one_line=True) for line in head], text_cells(
        [_runner_cells(r) for r in view.runners]
    )


def _plain_frame(view: QueueView) -> str:
    head, rows = _frame_lines(view)
    return "\n".join([*head, "", *plain_table(None, RUNNER_COLUMNS, rows)])


def _rich_frame(view: QueueView) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head, rows = _frame_lines(view)
    table = Table(*RUNNER_COLUMNS)
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    return Group(*(Text(line) for line in head), table)


@click.command()
@click.argument("app")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=1.0,
    show_default=True,
    help="Seconds between two frames.",
)
@json_option
def top(app: str, once: bool, interval: float, as_json: bool) -> None:
    """A live view of APP's queue (counts, Redis, backlog age, runners) until Ctrl-C."""
    queue = load_queue(app)
    if once or as_json:
        view = admin(queue, queue_view)
        if as_json:
            print_json(view.doc())
        elif have_rich():
            from rich.console import Console

            Console(highlight=False).print(_rich_frame(view))
        else:
            click.echo(_plain_frame(view))
        return

    async def frame(q: Queue, rich: bool) -> Any:
        """The next frame; while SQL or Redis does not answer, a line that says so (the
        view keeps running and recovers with them)."""
        try:
            view = await queue_view(q)
        except BackendError as exc:
            line = clean(f"queue {q.name}: unavailable: {redact(str(exc))}", one_line=True)
            if rich:
                from rich.text import Text

                return Text(line)
            return line
        return _rich_frame(view) if rich else _plain_frame(view)

    async def live(q: Queue) -> None:
        if have_rich():
            from rich.live import Live

            with Live(await frame(q, True), auto_refresh=False) as screen:
                while True:
                    await asyncio.sleep(interval)
                    screen.update(await frame(q, True), refresh=True)
        while True:
            # Without rich: clear the screen and print the frame again.
            click.echo("\x1b[2J\x1b[H" + await frame(q, False))
            await asyncio.sleep(interval)

    # Ctrl-C cancels the loop's main task; asyncio then raises KeyboardInterrupt, or the
    # CancelledError itself when a connection being opened took the first cancellation:
    # either one is the way out.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        admin(queue, live)


@click.command()
@click.argument("app")
@click.option(
    "--no-runner-required",
    is_flag=True,
    help="Healthy without a live runner (readiness of a producer).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds each check may take.",
)
@json_option
def health(app: str, no_runner_required: bool, timeout: float, as_json: bool) -> None:
    """Exit 0 when APP's SQL store and Redis answer and a runner is alive; else exit 1
    with the reason on stderr (liveness and readiness probes)."""
    queue = load_queue(app)
    queue.init_db = False  # a probe never creates the table

    async def check() -> dict[str, Any]:
        report: dict[str, Any] = {"queue": queue.name, "sql": None, "redis": None}
        try:
            be = await asyncio.wait_for(queue._backend(), timeout)
            try:
                await asyncio.wait_for(be.store.get_job("aqueue-health-probe"), timeout)
                report["sql"] = "ok"
            except Exception as exc:
                report["sql"] = _reason(exc)
            try:
                alive = await asyncio.wait_for(be.broker.runners(), timeout)
                report["redis"] = "ok"
                report["runners_alive"] = sum(alive.values())
            except Exception as exc:
                report["redis"] = _reason(exc)
        except Exception as exc:
            report["sql"] = report["redis"] = _reason(exc)
        finally:
            with contextlib.suppress(Exception):
                await queue.close()
        return report

    report = run_async(check)
    problems = [f"{part}: {report[part]}" for part in ("sql", "redis") if report[part] != "ok"]
    if report["redis"] == "ok" and not no_runner_required and not report["runners_alive"]:
        problems.append("no runner alive")
    report["ok"] = not problems
    report["problems"] = problems
    if as_json:
        print_json(report)
    elif not problems:
        click.echo(f"ok: queue {queue.name}, {report.get('runners_alive', 0)} runner(s) alive")
    for p in problems:
        stderr(f"aqueue: unhealthy: {p}")
    if problems:
        sys.exit(1)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return redact(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
