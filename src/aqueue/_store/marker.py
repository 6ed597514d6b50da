"""Marks jobs as dispatched after their messages reached Redis, lazily and in bulk.

The sweeper re-dispatches ``todo`` rows never marked dispatched (a producer that crashed
between its INSERT and its push) once a grace period has passed (``sweep_grace``, 30 s by
default; 5 s, or less if the grace is, at a runner's start). Marking costs one UPDATE per
``linger`` period however many jobs were enqueued, and nobody waits for it.

- The jobs of an ``enqueue_many`` batch are named by their id range, not one by one.
- A mark names the write its push followed (the row's ``updated_at``): a row written
  again since (retried by a runner whose push failed, say) is left unmarked for the
  sweeper.
- A mark names the Redis dataset (epoch) that its push went into, as the push reported
  it: Redis may lose its data between a push and the mark, and a mark naming the new
  dataset would hide the lost message from the sweeper.
- A job claimed before its mark already carries the claim's mark: the UPDATE only reads
  its row. A producer that dies with marks pending costs a second copy of those messages
  after the grace, never a lost job.
- The linger is a second: one UPDATE a second per producer marks a whole burst (an
  ``enqueue_many`` of 20,000 jobs: 60-63 % of the batched-insert rate against 42-53 %
  with a 50 ms linger, in pairs of the same minutes). Marks may therefore come after a
  short sweep grace, and the sweeper then sends a second copy of a job's first message;
  that copy is harmless: a claim is fenced by the stall and attempt counts the message
  carries, so it cannot take a retry's turn, and it is dropped once the job has moved on.
- A mark leaves out the jobs pushed less than ``min_age`` ago (half the linger): they
  wait for the next one. A job is usually claimed within milliseconds of its push, and
  its claim marks it; an UPDATE naming it meanwhile would lock its unclaimed row and
  hold up its claim until the whole mark commits (14-35 ms for the ~500 jobs of a
  second at 500 jobs/s). Marking only older jobs mostly reads rows already claimed,
  which under READ COMMITTED it does not lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from .._errors import BackendError
from .._ids import now_us
from .._models import IdRun, NewJob, id_runs
from .base import JobStore

log = logging.getLogger("aqueue.marker")

LINGER = 1.0
"""Seconds a producer's marks wait to be written together."""
MIN_AGE = LINGER / 2
"""Seconds since its push before a job is named in a mark (see the module's text)."""
LONGEST = LINGER + MIN_AGE
"""The longest a pushed job may sit in Redis with no mark in SQL while its producer
lives (and its mark's UPDATE goes through)."""

# Marks added together at one monotonic time: (time, single jobs, runs of batch ids),
# each with the ``updated_at`` of the write its push followed and the push's epoch.
_Batch = tuple[float, list[tuple[str, int, str]], list[tuple[IdRun, int, str]]]


def split_due(
    batches: deque[_Batch], now: float, min_age: float
) -> tuple[list[tuple[str, int, str]], list[tuple[IdRun, int, str]]]:
    """Take from ``batches`` (oldest first) those added at least ``min_age`` before
    ``now``; the younger stay."""
    marks: list[tuple[str, int, str]] = []
    runs: list[tuple[IdRun, int, str]] = []
    while batches and batches[0][0] <= now - min_age:
        _, ms, rs = batches.popleft()
        marks.extend(ms)
        runs.extend(rs)
    return marks, runs


class DispatchMarker:
    def __init__(
        self,
        store: JobStore,
        *,
        linger: float = LINGER,
        min_age: float = MIN_AGE,
        clock: Callable[[], int] = now_us,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._linger = linger
        self._min_age = min_age
        self._batches: deque[_Batch] = deque()
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def add(self, ids: Iterable[str], written_at: int, epoch: str) -> None:
        """Jobs whose messages were pushed into the dataset ``epoch`` after a write that
        set ``updated_at`` to ``written_at``."""
        self._batches.append((self._monotonic(), [(i, written_at, epoch) for i in ids], []))
        self._start()

    def add_jobs(self, jobs: Sequence[NewJob], written_at: int, epoch: str) -> None:
        """Jobs just inserted and pushed: runs of batch ids are marked as ranges."""
        singles, runs = id_runs(jobs)
        self._batches.append(
            (
                self._monotonic(),
                [(i, written_at, epoch) for i in singles],
                [(r, written_at, epoch) for r in runs],
            )
        )
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aqueue-dispatch-marker"
            )
        self._wakeup.set()

    async def _run(self) -> None:
        # Ends on its own when closed: a cancellation can be lost inside redis-py's calls
        # on Python 3.11 (asyncio.wait_for), so shutdown must not depend on one.
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._closed:  # linger, unless closing
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._linger)
            await self._flush(self._min_age if not self._closed else 0.0)
            if self._batches:  # the young ones, at the next linger
                self._wakeup.set()

    async def _flush(self, min_age: float = 0.0) -> None:
        """Mark what is pending now and at least ``min_age`` old; what arrives meanwhile
        waits for the next linger (under a steady trickle of jobs, marking until nothing
        was pending kept one ``UPDATE`` after another going)."""
        marks, runs = split_due(self._batches, self._monotonic(), min_age)
        by_epoch: dict[str, tuple[list[tuple[str, int]], list[tuple[IdRun, int]]]] = {}
        for i, at, epoch in marks:
            by_epoch.setdefault(epoch, ([], []))[0].append((i, at))
        for r, at, epoch in runs:
            by_epoch.setdefault(epoch, ([], []))[1].append((r, at))
        for epoch, (ms, rs) in by_epoch.items():
            while ms or rs:
                part, ms = ms[:2000], ms[2000:]
                part_runs, rs = rs[:200], rs[200:]
                await self._mark(part, part_runs, epoch)

    async def _mark(
        self, marks: list[tuple[str, int]], runs: list[tuple[IdRun, int]], epoch: str
    ) -> None:
        try:
            await self._store.mark_dispatched(marks, epoch, self._clock(), runs, unmarked_only=True)
        except BackendError as exc:  # the sweeper copes: it only re-dispatches once
            log.debug("could not mark %d job(s) dispatched: %s", len(marks) + len(runs), exc)

    async def close(self) -> None:
        self._closed = True
        self._closing.set()
        self._wakeup.set()
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=10)
            for t in pending:
                t.cancel()
            self._task = None
        while self._batches:
            await self._flush()
