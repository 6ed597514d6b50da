"""``python -m aqueue``: run runners and administer queues."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ._app import Queue
from ._errors import AqueueError
from ._runner.config import RunnerConfig

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("aqueue.cli")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"aqueue: error: {message}", err=True)
    sys.exit(code)


def load_queue(path: str) -> Queue:
    """Import ``module:attr`` and check that it is a :class:`Queue`."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        _fail(f"{path!r} is not of the form module:attribute (e.g. app:queue)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        _fail(f"cannot import module {module_name!r}: {exc}")
    except Exception as exc:
        _fail(f"importing {module_name!r} raised {type(exc).__name__}: {exc}")
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            _fail(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(obj, Queue):
        _fail(f"{path!r} is a {type(obj).__name__}, not an aqueue.Queue")
    return obj


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s [%(process)d] %(message)s",
        stream=sys.stderr,
    )


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def _admin(queue: Queue, fn: Callable[[Queue], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await fn(queue)
        finally:
            await queue.close()

    try:
        return _run(go)
    except AqueueError as exc:
        _fail(str(exc), 1)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(value: str, *, forever: bool) -> float | None:
    """A duration in seconds (``3600``, ``30m``, ``12h``, ``7d``), or None for
    ``forever`` where that is allowed."""
    text = value.strip().lower()
    if forever and text in ("forever", "never", "none"):
        return None
    scale = _UNITS.get(text[-1:])
    try:
        seconds = float(text[:-1] if scale else text) * (scale or 1.0)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a duration (e.g. 3600, 30m, 12h, 7d)"
            + (" or 'forever'" if forever else "")
        ) from None
    if not 0 <= seconds < float("inf"):  # also NaN
        raise click.BadParameter(f"{value!r}: a duration must be finite and >= 0")
    return seconds


def _duration_or_forever(_ctx: click.Context, _param: click.Parameter, value: str) -> float | None:
    """A duration in seconds (``3600``, ``30m``, ``12h``, ``7d``) or ``forever``."""
    return _seconds(value, forever=True)


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    """A finite duration in seconds (``3600``, ``30m``, ``12h``, ``7d``)."""
    seconds = _seconds(value, forever=False)
    assert seconds is not None  # forever=False never gives None
    return seconds


def _shown(seconds: float | None) -> str:
    """A duration as ``--lookback``/``--keep-results`` read it (``7d``, ``forever``)."""
    if seconds is None:
        return "forever"
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}"


_DEFAULT: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RunnerConfig)}
"""RunnerConfig's defaults: the ``run`` command's options default to them."""


def _config_option(
    *decls: str, field: str | None = None, type: Any = float, **kwargs: Any
) -> Callable[[F], F]:
    """A ``run`` option for a RunnerConfig field (named like the flag unless ``field``
    says), defaulting to the field's default, shown in the help. Durations are shown as
    ``7d``/``forever``, and an off switch (None) as 0."""
    default = _DEFAULT[field or decls[-1].removeprefix("--").replace("-", "_")]
    if type is str:
        default = _shown(default)
    elif default is None:
        default = 0
    return click.option(*decls, type=type, default=default, show_default=True, **kwargs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aqueue")
def cli() -> None:
    """aqueue: durable asyncio task queue (SQL + Redis)."""


@cli.command()
@click.argument("app")
@_config_option("-c", "--concurrency", type=click.IntRange(min=1), help="Handlers per process.")
@click.option("-p", "--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--burst", is_flag=True, help="Exit once no job is ready or running.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
@_config_option("--lease", help="Lease seconds.")
@click.option("--heartbeat", type=float, default=None, help="Renewal period [default: lease/3].")
@_config_option("--grace", field="shutdown_grace", help="Seconds running handlers get at a stop.")
@_config_option("--reclaim-period", help="Seconds between two looks for expired leases.")
@_config_option(
    "--reclaim-limit",
    type=click.IntRange(min=1),
    help="Most expired leases handled per reclaim pass.",
)
@_config_option("--sweep-period", help="Seconds between two sweeps (SQL compared with Redis).")
@_config_option("--sweep-grace", help="Age (s) after which an undispatched job is sent again.")
@_config_option(
    "--lookback",
    type=str,
    callback=_duration,
    help="At startup, re-dispatch unfinished jobs created within this window (seconds, "
    "or 30m/12h/7d); older ones are left to the sweeper.",
)
@_config_option(
    "--max-stalls",
    type=click.IntRange(min=1),
    help="Stalls (leases that expired while the job ran) after which the job fails.",
)
@_config_option(
    "--zombie-destination",
    type=click.Choice(["todo", "failed", "done"]),
    help="Where a reclaimed job goes: todo (run again), or failed/done recorded unrun.",
)
@_config_option("--watchdog", help="Report a loop blocked this many seconds (0 disables).")
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=_DEFAULT["prefetch"],
    help="Jobs claimed ahead of a free slot [default: concurrency, at most 100].",
)
@_config_option(
    "--gc-threshold",
    type=click.IntRange(min=0),
    help="Young-generation GC threshold while running, startup objects frozen (0: leave "
    "Python's collector alone).",
)
@_config_option(
    "--startup-wait",
    type=click.FloatRange(min=0),
    help="Seconds a starting runner keeps trying to reach a database or Redis that is down.",
)
@_config_option(
    "--keep-results",
    type=str,
    callback=_duration_or_forever,
    help="Delete finished jobs older than this (seconds, or 30m/12h/7d; 'forever' keeps them).",
)
def run(
    app: str,
    concurrency: int,
    processes: int,
    burst: bool,
    log_level: str,
    lease: float,
    heartbeat: float | None,
    grace: float,
    reclaim_period: float,
    reclaim_limit: int,
    sweep_period: float,
    sweep_grace: float,
    lookback: float,
    max_stalls: int,
    zombie_destination: str,
    watchdog: float,
    prefetch: int | None,
    startup_wait: float,
    keep_results: float | None,
    gc_threshold: int,
) -> None:
    """Run a runner for APP (module:queue)."""
    _setup_logging(log_level)
    queue = load_queue(app)
    try:
        config = RunnerConfig(
            concurrency=concurrency,
            burst=burst,
            lease=lease,
            heartbeat=heartbeat if heartbeat is not None else lease / 3,
            shutdown_grace=grace,
            reclaim_period=reclaim_period,
            reclaim_limit=reclaim_limit,
            sweep_period=sweep_period,
            sweep_grace=sweep_grace,
            lookback=lookback,
            startup_wait=startup_wait,
            max_stalls=max_stalls,
            zombie_destination=zombie_destination,  # type: ignore[arg-type]
            watchdog=watchdog or None,
            prefetch=prefetch,
            keep_results=keep_results,
            gc_threshold=gc_threshold or None,
        )
    except AqueueError as exc:
        _fail(str(exc))
    if processes > 1:
        from ._supervisor import supervise

        child = _strip_processes(list(sys.argv[1:]))
        sys.exit(supervise(child, processes, burst=burst))

    async def go() -> None:
        try:
            await queue.run(config)
        finally:
            await queue.close()
        from ._runner.execute import _abandoned

        if _abandoned:
            # Handlers that ignored their cancellation would keep asyncio.run's cleanup
            # waiting forever: the runner has put everything back, so leave now.
            log.error("exiting with %d abandoned handler(s) still running", len(_abandoned))
            logging.shutdown()
            os._exit(0)

    try:
        _run(go)
    except AqueueError as exc:
        _fail(str(exc), 1)


def _strip_processes(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-p", "--processes"):
            skip = True
            continue
        if a.startswith("--processes=") or (a.startswith("-p") and a[2:].isdigit()):
            continue
        out.append(a)
    return out


@cli.group()
def db() -> None:
    """Create or migrate the jobs table."""


@db.command("init")
@click.argument("app")
def db_init(app: str) -> None:
    """Create the jobs table of APP's queue when missing."""
    queue = load_queue(app)

    async def go(q: Queue) -> int:
        be = await q._backend()
        return await be.store.init_schema()

    version = _admin(queue, go)
    click.echo(f"table {queue.table}: schema version {version}")


@db.command("upgrade")
@click.argument("app")
def db_upgrade(app: str) -> None:
    """Migrate the jobs table of APP's queue to this aqueue's schema version."""
    queue = load_queue(app)
    queue.init_db = False

    async def go(q: Queue) -> tuple[int, int]:
        be = await q._backend()
        return await be.store.upgrade_schema()

    before, after = _admin(queue, go)
    click.echo(f"table {queue.table}: schema version {before} -> {after}")


@cli.group()
def embedded() -> None:
    """The embedded default's private Redis (under $AQUEUE_HOME, else ./.aqueue)."""


@embedded.command("stop")
@click.option("--home", type=click.Path(file_okay=False), default=None, help="Its directory.")
def embedded_stop(home: str | None) -> None:
    """Stop the embedded Redis (jobs stay in SQLite; the next use starts it again)."""
    from ._embedded import DEFAULT_HOME, ENV_HOME, stop_embedded_redis

    path = Path(home or os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()
    if stop_embedded_redis(path):
        click.echo(f"stopped the embedded Redis under {path}")
    else:
        click.echo(f"no embedded Redis running under {path}")


@cli.command()
@click.argument("app")
def stats(app: str) -> None:
    """Job counts by status, and Redis list lengths."""
    queue = load_queue(app)

    async def go(q: Queue) -> tuple[dict[Any, int], tuple[int, int]]:
        be = await q._backend()
        return await q.counts(), await be.broker.lengths()

    counts, (ready, delayed) = _admin(queue, go)
    click.echo(f"queue {queue.name}")
    for status, n in counts.items():
        click.echo(f"  {status.value:<10}{n:>10}")
    click.echo(f"  redis ready {ready}, delayed {delayed}")


@cli.command()
@click.argument("app")
@click.argument("job_ids", nargs=-1, required=True)
def status(app: str, job_ids: tuple[str, ...]) -> None:
    """Show jobs by id."""
    queue = load_queue(app)

    async def go(q: Queue) -> list[str]:
        lines = []
        for jid in job_ids:
            try:
                rec = await q.job(jid).info()
            except AqueueError as exc:
                lines.append(f"{jid}  {exc}")
                continue
            lines.append(
                f"{rec.id}  {rec.status.value}  task={rec.task} attempts={rec.attempts}/"
                f"{rec.max_attempts}" + (f" error={rec.error[:200]}" if rec.error else "")
            )
        return lines

    for line in _admin(queue, go):
        click.echo(line)


@cli.command()
@click.argument("app")
@click.argument("job_ids", nargs=-1)
@click.option(
    "--status",
    "by_status",
    type=click.Choice(["failed", "done", "cancelled", "todo"]),
    help="Repush every job of the queue in this status (up to --limit).",
)
@click.option("--limit", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--force", is_flag=True, help="Also repush running jobs (revokes their lease).")
def repush(
    app: str, job_ids: tuple[str, ...], by_status: str | None, limit: int, force: bool
) -> None:
    """Force jobs back to todo and into Redis, by id or by status."""
    if not job_ids and not by_status:
        _fail("give job ids or --status")
    queue = load_queue(app)

    async def go(q: Queue) -> list[str]:
        ids = list(job_ids)
        if by_status:
            ids += await q.job_ids(by_status, limit)
        lines = []
        for jid in ids:
            try:
                await q.repush(jid, force=force)
                lines.append(f"{jid}  repushed")
            except AqueueError as exc:
                lines.append(f"{jid}  {exc}")
        return lines

    lines = _admin(queue, go)
    for line in lines:
        click.echo(line)
    done = sum(line.endswith("  repushed") for line in lines)
    click.echo(f"repushed {done} of {len(lines)} job(s)")
    if done < len(lines):
        sys.exit(1)


def main() -> None:
    cli(prog_name="python -m aqueue")
