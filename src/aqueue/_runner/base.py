"""The runner's fields (its state is a :class:`RunnerCore`), the clock and the slots,
under the mixins that make a :class:`Runner`: running jobs (``jobs``), fetching
(``fetching``), and the run, start and stop of ``runner``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._ids import new_runner_id, now_us
from .._message import Message
from .claim import Claimer
from .config import RunnerConfig
from .core import RunnerCore, RunnerStats
from .finish import Recorder
from .gate import Gate
from .recovery import SweepCursor
from .threads import ThreadPool

if TYPE_CHECKING:
    from .._backend import Backend
    from .._registry import Registry

log = logging.getLogger("aqueue.runner")


class Slot:
    """One job's share of the runner's slots (concurrency + prefetch), given back once."""

    __slots__ = ("_held", "_runner")

    def __init__(self, runner: RunnerBase) -> None:
        self._runner = runner
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._runner._release_slots(1)


class RunnerBase:
    """The runner's fields and the small operations on them every part uses."""

    def __init__(
        self,
        queue: Registry,
        config: RunnerConfig | None = None,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.queue = queue
        self.config = config or RunnerConfig()
        self.id = new_runner_id()
        # Lease arithmetic follows the SQL server's clock (leases live in SQL): the
        # runner's wall clock plus an offset measured against it. Tests may inject one.
        self._offset_us = 0
        self._sync_clock = clock is None
        self.clock: Callable[[], int] = clock or self._server_clock
        self.stats = RunnerStats()
        self.state: dict[str, Any] = {}
        self._stop = asyncio.Event()
        cfg = self.config
        # The state behind the runner's promises, and the decisions on it (sans-I/O).
        self.core: RunnerCore[asyncio.Task[None], asyncio.Task[None]] = RunnerCore(
            concurrency=cfg.concurrency,
            prefetch=cfg.prefetch_count,
            lease=cfg.lease,
            margin=cfg.margin,
            now=time.monotonic(),
        )
        self._handler_gate = Gate(self.config.concurrency)
        self._free_changed = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()
        self._running = self.core.running
        self._revoked = self.core.revoked
        self._task_sems: dict[str, Gate] = {}
        self._threads = ThreadPool(cfg.threads)  # sync handlers
        self._inflight = self.core.inflight
        self._last_burst_resync = 0.0
        self._next_suspect_check = 0.0
        self._sweep_cursor = SweepCursor()
        self._be: Backend | None = None
        self._recorder: Recorder | None = None
        self._claimer: Claimer | None = None
        self.started = asyncio.Event()

    @property
    def _slots(self) -> int:
        return self.core.slots

    @property
    def _free(self) -> int:
        return self.core.free

    def _server_clock(self) -> int:
        return now_us() + self._offset_us

    # -- fetch & claim -------------------------------------------------------------------

    def _release_slots(self, n: int) -> None:
        self.core.free += n
        self._free_changed.set()

    def _task_limit(self, concurrency: int | None, msg: Message) -> Gate | None:
        """A task's own concurrency limit: at most that many of its jobs run at once here."""
        if concurrency is None:
            return None
        sem = self._task_sems.get(msg.task)
        if sem is None:
            sem = self._task_sems[msg.task] = Gate(concurrency)
        return sem

    def _forget(self, job_id: str, token: str) -> None:
        """Stop renewing this run's lease (only this run's: the same job may have been
        claimed again since, under another token)."""
        self.core.forget(job_id, token)

    # -- side tasks ------------------------------------------------------------------------

    def _local_deadline_passed(self) -> bool:
        return self.core.deadline_passed(time.monotonic())

    def stop(self) -> None:
        """Ask the runner to stop: no new jobs; running ones get the grace period."""
        if not self._stop.is_set():
            log.info("runner %s stopping", self.id)
        self._stop.set()
