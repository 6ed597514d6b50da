"""``run``: a runner (or ``--processes`` of them under a supervisor) for an app's
queue, its options building a ``RunnerConfig``."""

from __future__ import annotations

import logging
import os
import sys

import click

from .._errors import AqueueError
from .._runner.config import RunnerConfig
from .common import fail, load_queue, run_async, setup_logging
from .options import DEFAULT, config_option, duration, duration_or_forever

log = logging.getLogger("aqueue.cli")


@click.command()
@click.argument("app")
@config_option("-c", "--concurrency", type=click.IntRange(min=1), help="Handlers per process.")
@click.option("-p", "--processes", type=click.IntRange(min=1), default=1, show_default=True)
@config_option(
    "--threads",
    type=click.IntRange(min=0),
    help="Threads for sync (plain def) handlers per process [0: min(32, CPUs + 4)].",
)
@click.option("--burst", is_flag=True, help="Exit once no job is ready or running.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line, with the job's fields on a job's lines.",
)
@config_option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    help="Serve Prometheus metrics on this port (0: off; with --processes N, process i "
    "serves on port+i). Needs aqueue[metrics].",
)
@click.option(
    "--metrics-host",
    default=DEFAULT["metrics_host"],
    show_default=True,
    help="Address the metrics port listens on (0.0.0.0: every interface).",
)
@config_option("--lease", help="Lease seconds.")
@click.option("--heartbeat", type=float, default=None, help="Renewal period [default: lease/3].")
@config_option("--grace", field="shutdown_grace", help="Seconds running handlers get at a stop.")
@config_option("--reclaim-period", help="Seconds between two looks for expired leases.")
@config_option(
    "--reclaim-limit",
    type=click.IntRange(min=1),
    help="Most expired leases handled per reclaim pass.",
)
@config_option("--sweep-period", help="Seconds between two sweeps (SQL compared with Redis).")
@config_option("--sweep-grace", help="Age (s) after which an undispatched job is sent again.")
@config_option(
    "--lookback",
    type=str,
    callback=duration,
    help="At startup, re-dispatch unfinished jobs created within this window (seconds, "
    "or 30m/12h/7d); older ones are left to the sweeper.",
)
@config_option(
    "--max-stalls",
    type=click.IntRange(min=1),
    help="Stalls (leases that expired while the job ran) after which the job fails.",
)
@config_option(
    "--zombie-destination",
    type=click.Choice(["todo", "failed", "done"]),
    help="Where a reclaimed job goes: todo (run again), or failed/done recorded unrun.",
)
@config_option("--watchdog", help="Report a loop blocked this many seconds (0 disables).")
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=DEFAULT["prefetch"],
    help="Jobs claimed ahead of a free slot [default: concurrency, at most 100].",
)
@config_option(
    "--finish-linger",
    type=click.FloatRange(min=0, max=1),
    help="Seconds an outcome recorded alone waits to share its SQL commit with others.",
)
@config_option(
    "--gc-threshold",
    type=click.IntRange(min=0),
    help="Young-generation GC threshold while running, startup objects frozen (0: leave "
    "Python's collector alone).",
)
@config_option(
    "--startup-wait",
    type=click.FloatRange(min=0),
    help="Seconds a starting runner keeps trying to reach a database or Redis that is down.",
)
@config_option(
    "--keep-results",
    type=str,
    callback=duration_or_forever,
    help="Delete finished jobs older than this (seconds, or 30m/12h/7d; 'forever' keeps them).",
)
def run(
    app: str,
    concurrency: int,
    processes: int,
    threads: int,
    burst: bool,
    log_level: str,
    log_format: str,
    metrics_port: int,
    metrics_host: str,
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
    finish_linger: float,
    gc_threshold: int,
) -> None:
    """Run a runner for APP (module:queue)."""
    setup_logging(log_level)
    if log_format == "json":
        from .._logjson import use_json_logs

        use_json_logs()
    queue = load_queue(app)
    try:
        config = RunnerConfig(
            concurrency=concurrency,
            threads=threads or None,
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
            finish_linger=finish_linger,
            gc_threshold=gc_threshold or None,
            metrics_port=metrics_port or None,
            metrics_host=metrics_host,
        )
    except AqueueError as exc:
        fail(str(exc))
    if processes > 1:
        from .._supervisor import supervise

        child = strip_processes(list(sys.argv[1:]))
        sys.exit(supervise(child, processes, burst=burst))

    async def go() -> None:
        try:
            await queue.run(config)
        finally:
            await queue.close()
        from .._runner.execute import _abandoned

        if _abandoned:
            # Handlers that ignored their cancellation would keep asyncio.run's cleanup
            # waiting forever: the runner has put everything back, so leave now.
            log.error("exiting with %d abandoned handler(s) still running", len(_abandoned))
            logging.shutdown()
            os._exit(0)

    try:
        run_async(go)
    except AqueueError as exc:
        fail(str(exc), 1)


def strip_processes(argv: list[str]) -> list[str]:
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
