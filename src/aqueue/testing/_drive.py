"""``drive(queue)``: run a queue's real runner on the in-memory store and broker, under a
clock the test moves, and wait until no job is runnable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .._app import Queue
from .._cron import due, tick_job_id
from .._errors import ConfigurationError, RunnerCrashedError
from .._models import JobRecord, JobStatus
from .._runner.config import RunnerConfig
from .._runner.runner import Runner
from ._broker import MemoryBroker
from ._clock import FakeClock
from ._store import MemoryStore
from ._waiters import MemoryFinishWaiters

DEFAULT_CONFIG = RunnerConfig(
    concurrency=10,
    # real seconds: a running job cancelled or repushed is stopped within half a second
    heartbeat=0.5,
    handle_signals=False,
    watchdog=None,
    gc_threshold=None,
    shutdown_grace=2.0,
    startup_wait=0.0,
)
"""The runner's settings under :func:`drive` (pass ``config=`` to change them)."""


class Driver:
    """A queue running in memory: ``queue``, ``clock``, ``store``, ``broker``, ``runner``,
    and :meth:`drain` to wait for the work to be done."""

    def __init__(
        self,
        queue: Queue,
        clock: FakeClock,
        store: MemoryStore,
        broker: MemoryBroker,
        runner: Runner,
        task: asyncio.Task[None],
    ) -> None:
        self.queue = queue
        self.clock = clock
        self.store = store
        self.broker = broker
        self.runner = runner
        self._task = task
        start = clock()
        self._last_ticks: dict[str, int] = dict.fromkeys(queue.schedules, start)

    def jobs(self, status: str | JobStatus | None = None) -> list[JobRecord]:
        """The queue's jobs as stored (oldest first), all or those in ``status``."""
        want = None if status is None else JobStatus(status)
        return [
            j
            for j in self.store.jobs()
            if j.queue == self.queue.name and (want is None or j.status is want)
        ]

    async def drain(self, *, timeout: float = 10.0) -> None:
        """Run until no job of the queue is runnable at the clock's time: every due job
        (and due cron tick) has run and its outcome is recorded; jobs delayed or retried
        later wait for :meth:`advance`. Raises :class:`TimeoutError` after
        ``timeout`` real seconds (a handler that never returns, or waits for something
        only the test can do), and :class:`RunnerCrashedError` if the runner stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet = 0
        while quiet < 3:  # three looks in a row with nothing in flight
            self._check_runner()
            await self._enqueue_ticks()
            moved, _ = await self.broker.promote()
            runnable = await self.store.unfinished_count(self.queue.name, self.clock())
            if runnable:
                runnable -= len(self._deferred())
            if moved or runnable or not self.broker.idle():
                quiet = 0
                if loop.time() > deadline:
                    raise TimeoutError(
                        f"drain: {runnable} job(s) of queue {self.queue.name!r} still "
                        f"runnable after {timeout}s: "
                        + ", ".join(
                            f"{j.id} ({j.task}, {j.status.value})"
                            for j in self.jobs()
                            if j.status in (JobStatus.TODO, JobStatus.RUNNING)
                        )
                    )
                # the runner works meanwhile: look again after a millisecond
                await asyncio.sleep(0.001)
            else:
                quiet += 1
                await asyncio.sleep(0)

    async def advance(self, seconds: float, *, timeout: float = 10.0) -> None:
        """Move the clock forward by ``seconds``, then :meth:`drain`."""
        self.clock.advance(seconds)
        await self.drain(timeout=timeout)

    async def drain_all(self, *, max_steps: int = 1000, timeout: float = 10.0) -> None:
        """Drain, then move the clock to the next delayed job or retry and drain again,
        until no job waits (cron ticks alone do not move it)."""
        for _ in range(max_steps):
            await self.drain(timeout=timeout)
            deferred = self._deferred()
            waiting = [j.run_at for j in self.jobs(JobStatus.TODO) if j.id not in deferred]
            waiting += deferred.values()
            if not waiting:
                return
            self.clock.set(max(self.clock(), min(waiting)))
        raise TimeoutError(f"drain_all: jobs still waiting after {max_steps} steps")

    def _deferred(self) -> dict[str, int]:
        """Jobs due in the store whose message waits in the delayed set until later (a
        rate limit deferred them), with that time: they are not runnable before it."""
        now = self.clock()
        later = {i: due for i, due in self.broker.delayed_jobs().items() if due > now}
        return {
            j.id: later[j.id]
            for j in self.jobs(JobStatus.TODO)
            if j.id in later and j.run_at <= now
        }

    def _check_runner(self) -> None:
        if self._task.done():
            exc = None if self._task.cancelled() else self._task.exception()
            raise RunnerCrashedError(f"the runner under drive() stopped: {exc!r}") from exc

    async def _enqueue_ticks(self) -> None:
        """The cron and periodic ticks due at the clock's time, enqueued now rather than
        at the runner's scheduler's next look (up to a second of real time later); each
        tick's job id is the scheduler's own (``tick_job_id``), so it is stored once."""
        now = self.clock()
        for name, sched in self.queue.schedules.items():
            last = self._last_ticks.get(name, now)
            for tick in due(sched, last, now):
                job_id = tick_job_id(self.queue.name, name, tick)
                await self.queue.options(job_id=job_id).enqueue(name)
            self._last_ticks[name] = now


@contextlib.asynccontextmanager
async def drive(
    queue: Queue,
    *,
    clock: FakeClock | None = None,
    config: RunnerConfig | None = None,
) -> AsyncIterator[Driver]:
    """Run ``queue`` on an in-memory store and broker with its real runner, under a
    :class:`FakeClock`: ``async with drive(queue) as q: ...; await q.drain()``. Nothing
    connects to Redis or a database. On exit the runner stops and the queue is put back
    as it was (its own backend and URLs)."""
    if queue._parts_factory is not None:
        raise ConfigurationError(f"queue {queue.name!r} is already driven")
    clock = clock or FakeClock()
    store = MemoryStore(clock)
    broker = MemoryBroker(queue.key_prefix, queue.name, clock)
    waiters = MemoryFinishWaiters(broker)

    async def parts() -> tuple[MemoryStore, MemoryBroker, MemoryFinishWaiters]:
        if queue.init_db:
            await store.init_schema()
        return store, broker, waiters

    saved_be, saved_clock = queue._be, queue._clock
    queue._be = None
    queue._parts_factory = parts
    queue._clock = clock  # the producer side's writes read the test's clock
    try:
        runner = Runner(queue, config or DEFAULT_CONFIG, clock=clock)
        loop = asyncio.get_running_loop()
        task = loop.create_task(runner.run(), name="aqueue-drive-runner")
        try:
            started = loop.create_task(runner.started.wait())
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            started.cancel()
            driver = Driver(queue, clock, store, broker, runner, task)
            driver._check_runner()
            yield driver
            driver._check_runner()
        finally:
            await _stop(runner, task)
            await queue.close()
    finally:
        queue._parts_factory = None
        queue._be = saved_be
        queue._clock = saved_clock


async def _stop(runner: Runner, task: asyncio.Task[None]) -> None:
    """Stop the runner as a signal would (running handlers get the grace period); cancel
    it if it does not end."""
    runner.stop()
    await asyncio.wait({task}, timeout=30)
    if not task.done():
        task.cancel()
        await asyncio.wait({task})


__all__ = ["DEFAULT_CONFIG", "Driver", "drive"]
