"""The "main job" demo: enqueue N jobs, then drain them with a runner in this process.

Run it from the repository root::

    python examples/demo.py [--jobs 10000] [--concurrency 100]

With neither ``AQUEUE_REDIS_URL`` nor ``AQUEUE_DATABASE_URL`` set, ``Queue("demo")`` uses
the embedded default under ``./.aqueue/``: a SQLite file and a local Redis on a unix
socket, started on first use and left running for the next process. Set those variables
to run the demo against your own Redis / SQL database instead.

The demo purges the ``demo`` queue, enqueues N jobs with ``enqueue_many``, then runs a
burst runner (it stops once every job is finished) while a progress bar follows the job
counts in SQL. About 1% of the jobs fail on their first attempt, so retries show up in
the summary; every job succeeds on its second attempt. The exit status is 0 when every
job is done and none failed.

Ctrl-C during the drain stops the runner gracefully (a second Ctrl-C cancels running
jobs); the summary then shows what was finished.

To stop the embedded Redis afterwards::

    python -m aqueue embedded stop
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import aqueue
from aqueue import JobStatus

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

QUEUE_NAME = "demo"
ENQUEUE_CHUNK = 1_000
"""Jobs per ``enqueue_many`` call (aqueue itself commits them in batches of 500)."""
FLAKY_EVERY = 100
"""Every FLAKY_EVERY-th job fails its first attempt (about 1% of the jobs)."""
POLL_INTERVAL = 0.2
"""Seconds between two reads of the job counts while the runner drains the queue."""
PLAIN_PRINT_INTERVAL = 1.0
"""Without rich: seconds between two progress lines."""

log = logging.getLogger("demo")
queue = aqueue.Queue(QUEUE_NAME)


class FlakyError(Exception):
    """The deliberate failure of a job's first attempt."""


@queue.task(
    name="demo.crunch",
    retries=2,
    backoff=aqueue.Backoff(base=0.05, cap=0.2),
)
async def crunch(n: int, text: str) -> str:
    """A tiny bit of work: hash the arguments, yield to the loop once."""
    digest = hashlib.blake2b(f"{n}:{text}".encode(), digest_size=8).hexdigest()
    await asyncio.sleep(0)
    if n % FLAKY_EVERY == 0 and aqueue.current_job().attempt == 1:
        raise FlakyError(f"job #{n} fails its first attempt on purpose")
    return digest


# -- progress display -------------------------------------------------------------------


class Display(Protocol):
    def __enter__(self) -> Display: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def stage(self, name: str, total: int) -> None:
        """Start a new progress bar (the previous one stays on screen, complete)."""

    def update(self, completed: int) -> None:
        """Set how many of the current stage's ``total`` are complete."""

    def note(self, message: str) -> None:
        """Print a line without breaking the progress display."""


class PlainDisplay:
    """Periodic plain lines, for when rich is not installed (or output is not a TTY)."""

    def __init__(self) -> None:
        self._name = ""
        self._total = 0
        self._completed = 0
        self._started = 0.0
        self._last_print = 0.0

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._print()

    def stage(self, name: str, total: int) -> None:
        if self._name:
            self._print()
        self._name, self._total, self._completed = name, total, 0
        self._started = self._last_print = time.perf_counter()

    def update(self, completed: int) -> None:
        self._completed = completed
        now = time.perf_counter()
        if now - self._last_print >= PLAIN_PRINT_INTERVAL:
            self._last_print = now
            self._print()

    def note(self, message: str) -> None:
        print(message, flush=True)

    def _print(self) -> None:
        if not self._name:
            return
        elapsed = time.perf_counter() - self._started
        pct = 100.0 * self._completed / self._total if self._total else 100.0
        rate = self._completed / elapsed if elapsed > 0 else 0.0
        print(
            f"{self._name}: {self._completed:,}/{self._total:,} ({pct:.0f}%), "
            f"{rate:,.0f} jobs/s, {elapsed:.1f} s",
            flush=True,
        )


class RichDisplay:
    """A rich progress bar per stage, with a live jobs/s rate."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress: Progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]:>12}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task: TaskID | None = None
        self._started = 0.0

    def __enter__(self) -> RichDisplay:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def stage(self, name: str, total: int) -> None:
        if self._task is not None:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(name, total=total, rate="")
        self._started = time.perf_counter()

    def update(self, completed: int) -> None:
        if self._task is None:
            return
        elapsed = time.perf_counter() - self._started
        rate = f"{completed / elapsed:,.0f} jobs/s" if elapsed > 0 and completed else ""
        self._progress.update(self._task, completed=completed, rate=rate)

    def note(self, message: str) -> None:
        self._progress.console.print(message, markup=False, highlight=False)


def make_display() -> Display:
    """A rich display when rich is installed, else plain lines; logging goes along."""
    try:
        from rich.console import Console
        from rich.logging import RichHandler
    except ImportError:
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return PlainDisplay()
    console = Console()
    logging.basicConfig(
        level=logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    return RichDisplay(console)


# -- the demo -----------------------------------------------------------------------------


def backend_description() -> str:
    """Where the demo's jobs live (never prints the URLs: they may hold passwords)."""
    from_env = [v for v in ("AQUEUE_REDIS_URL", "AQUEUE_DATABASE_URL") if os.environ.get(v)]
    if len(from_env) == 2:
        return "backend: Redis and SQL from AQUEUE_REDIS_URL / AQUEUE_DATABASE_URL"
    home = os.environ.get("AQUEUE_HOME") or "./.aqueue"
    if from_env:
        return f"backend: {from_env[0]}, the rest embedded in {home}"
    return f"backend: embedded default in {home} (SQLite + a local Redis)"


def finished(counts: dict[JobStatus, int]) -> int:
    return counts[JobStatus.DONE] + counts[JobStatus.FAILED] + counts[JobStatus.CANCELLED]


async def enqueue_all(n_jobs: int, display: Display) -> float:
    """Enqueue ``n_jobs`` in chunks; return the seconds it took."""
    display.stage("enqueue", n_jobs)
    started = time.perf_counter()
    for start in range(0, n_jobs, ENQUEUE_CHUNK):
        stop = min(start + ENQUEUE_CHUNK, n_jobs)
        await queue.enqueue_many((crunch, (i, f"item-{i}"), {}) for i in range(start, stop))
        display.update(stop)
    return time.perf_counter() - started


async def watch(display: Display, running: asyncio.Task[None]) -> dict[JobStatus, int]:
    """Follow the job counts until ``running`` ends; return the final counts."""
    while not running.done():
        display.update(finished(await queue.counts()))
        await asyncio.wait({running}, timeout=POLL_INTERVAL)
    counts = await queue.counts()
    display.update(finished(counts))
    return counts


async def drain(
    n_jobs: int, concurrency: int, display: Display
) -> tuple[dict[JobStatus, int], int, float]:
    """Run a burst runner until no job is left; return the counts, retries and seconds."""
    display.stage("drain", n_jobs)
    runner = aqueue.Runner(
        queue, aqueue.RunnerConfig(concurrency=concurrency, burst=True, handle_signals=True)
    )
    started = time.perf_counter()
    running = asyncio.create_task(runner.run(), name="demo-runner")
    try:
        counts = await watch(display, running)
    finally:
        if not running.done():
            runner.stop()
        await running  # re-raises a runner crash
    return counts, runner.stats.retried, time.perf_counter() - started


async def main(n_jobs: int, concurrency: int) -> int:
    started = time.perf_counter()
    display = make_display()
    print(backend_description(), flush=True)
    try:
        with display:
            purged = await queue.purge()
            if purged:
                display.note(f"purged {purged:,} old job(s) of queue {QUEUE_NAME!r}")
            enqueue_s = await enqueue_all(n_jobs, display)
            counts, retried, drain_s = await drain(n_jobs, concurrency, display)
    except aqueue.AqueueError as exc:
        print(f"demo: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await queue.close()
    total_s = time.perf_counter() - started
    unfinished = n_jobs - finished(counts)
    if unfinished > 0:
        print(f"demo: {unfinished} job(s) not finished (interrupted?)", file=sys.stderr)
    done, failed = counts[JobStatus.DONE], counts[JobStatus.FAILED]
    print(
        f"demo: {n_jobs} jobs, {done} done, {failed} failed, {retried} retried, "
        f"enqueue {n_jobs / enqueue_s:,.0f} jobs/s, "
        f"drain {finished(counts) / drain_s:,.0f} jobs/s, {total_s:.1f} s total",
        flush=True,
    )
    return 0 if done == n_jobs and failed == 0 else 1


def run(coro_fn: Callable[[], Awaitable[int]]) -> int:
    """Run on uvloop when it is installed, else on the default asyncio loop."""

    async def go() -> int:
        return await coro_fn()

    try:
        import uvloop
    except ImportError:
        return asyncio.run(go())
    return uvloop.run(go())


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=positive_int, default=10_000, help="jobs to run")
    parser.add_argument(
        "--concurrency", type=positive_int, default=100, help="handlers running at once"
    )
    args = parser.parse_args()
    try:
        return run(lambda: main(args.jobs, args.concurrency))
    except KeyboardInterrupt:  # before or after the drain (the runner handles it during)
        print("demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(cli())
