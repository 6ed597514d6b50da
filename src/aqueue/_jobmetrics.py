"""The per-job metrics of ``aqueue.metrics``: counted in plain ints and bucket lists by
the observer (one event loop updates them: no lock per job; a prometheus_client
Counter's or Histogram's lock, per job and metric, cost a runner draining no-op jobs a
tenth of its CPU), and turned into metric families when scraped."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import _observe
from ._message import Message
from ._models import JobStatus, NewJob

RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (*RUN_BUCKETS, 1800, 3600, 4 * 3600, 86400)

_OUTCOMES = {JobStatus.DONE: "done", JobStatus.FAILED: "failed", JobStatus.TODO: "retried"}


class _Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket ``le`` >= value
        self.total += value

    def family_sample(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs and the sum, as the exposition wants them."""
        counts, cumulative, out = list(self.counts), 0, []
        for bound, n in zip(self.bounds, counts, strict=False):
            cumulative += n
            out.append((repr(float(bound)), float(cumulative)))
        out.append(("+Inf", float(cumulative + counts[-1])))
        return out, self.total


class TaskMetrics:
    """One (queue, task)'s counts."""

    __slots__ = ("finished", "run", "running", "started", "wait")

    def __init__(self) -> None:
        self.started = 0
        self.running = 0
        self.finished: dict[str, int] = {}
        self.run = _Histogram(RUN_BUCKETS)
        self.wait = _Histogram(WAIT_BUCKETS)


class _Run:
    __slots__ = ("_began", "_m")

    def __init__(self, m: TaskMetrics) -> None:
        self._m = m
        self._began = time.perf_counter()

    def close(self, status: JobStatus | None, error: BaseException | None) -> None:
        m = self._m
        m.run.observe(time.perf_counter() - self._began)
        m.running -= 1
        if status is not None:
            outcome = _OUTCOMES.get(status, status.value)
        else:
            outcome = "manual" if error is None else "cancelled"
        m.finished[outcome] = m.finished.get(outcome, 0) + 1


class _Send:
    __slots__ = ("_jobs", "_owner", "_queue")
    carrier: dict[str, str] | None = None  # no trace context: that is aqueue.otel's

    def __init__(self, owner: JobMetrics, queue: str) -> None:
        self._owner, self._queue = owner, queue
        self._jobs: Sequence[NewJob] = ()

    def sent(self, jobs: Sequence[NewJob]) -> None:
        self._jobs = jobs

    def close(self, error: BaseException | None) -> None:
        if error is not None:
            return
        counts = self._owner.enqueued
        for j in self._jobs:
            key = (self._queue, j.task)
            counts[key] = counts.get(key, 0) + 1


class JobMetrics(Collector):
    """The observer that counts (an :class:`aqueue._observe.Observer`) and the collector
    that shows the counts."""

    def __init__(self) -> None:
        self.tasks: dict[tuple[str, str], TaskMetrics] = {}
        self.enqueued: dict[tuple[str, str], int] = {}
        self.reclaims: dict[tuple[str, str], int] = {}
        self.rejected: dict[str, int] = {}

    # -- the observer --------------------------------------------------------------------

    def sending(self, queue: str) -> _Send:
        return _Send(self, queue)

    def running(self, queue: str, msg: Message, runner_id: str) -> _Run:
        m = self.tasks.get((queue, msg.task))
        if m is None:
            m = self.tasks[(queue, msg.task)] = TaskMetrics()
        m.started += 1
        m.running += 1
        waited = _observe.due_seconds_ago(msg, time.time_ns() // 1000)
        if waited is not None:
            m.wait.observe(waited)
        return _Run(m)

    def reclaimed(self, queue: str, task: str) -> None:
        self.reclaims[(queue, task)] = self.reclaims.get((queue, task), 0) + 1

    def finish_rejected(self, queue: str) -> None:
        self.rejected[queue] = self.rejected.get(queue, 0) + 1

    # -- the collector -------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(fill=False))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(fill=True))

    def _families(self, *, fill: bool) -> list[Metric]:
        qt = ["queue", "task"]
        enqueued = CounterMetricFamily(
            "aqueue_jobs_enqueued", "Jobs stored by this process's enqueues.", labels=qt
        )
        started = CounterMetricFamily("aqueue_jobs_started", "Handler runs started.", labels=qt)
        finished = CounterMetricFamily(
            "aqueue_jobs_finished",
            "Handler runs ended, by outcome: done, failed, retried (failed, to run again), "
            "cancelled (stopped by the runner: lease revoked, deadline, shutdown), manual "
            "(a manual-commit task returned).",
            labels=[*qt, "outcome"],
        )
        reclaimed = CounterMetricFamily(
            "aqueue_jobs_reclaimed",
            "Jobs whose lease expired, taken back by this process's reclaimer.",
            labels=qt,
        )
        rejected = CounterMetricFamily(
            "aqueue_finishes_rejected",
            "Outcomes SQL refused (the lease token had been revoked).",
            labels=["queue"],
        )
        run = HistogramMetricFamily("aqueue_job_run_seconds", "Handler run time.", labels=qt)
        wait = HistogramMetricFamily(
            "aqueue_job_wait_seconds",
            "Time from when a job was due (enqueued, its run_at, a retry's time) to its start.",
            labels=qt,
        )
        in_flight = GaugeMetricFamily(
            "aqueue_jobs_in_flight", "Handlers running in this process.", labels=["queue"]
        )
        families: list[Metric] = [
            enqueued, started, finished, reclaimed, rejected, run, wait, in_flight
        ]  # fmt: skip
        if not fill:
            return families
        for (queue, task), n in list(self.enqueued.items()):
            enqueued.add_metric([queue, task], n)
        for (queue, task), n in list(self.reclaims.items()):
            reclaimed.add_metric([queue, task], n)
        for queue, n in list(self.rejected.items()):
            rejected.add_metric([queue], n)
        running: dict[str, int] = {}
        for (queue, task), m in list(self.tasks.items()):
            started.add_metric([queue, task], m.started)
            for outcome, n in list(m.finished.items()):
                finished.add_metric([queue, task, outcome], n)
            buckets, total = m.run.family_sample()
            run.add_metric([queue, task], buckets, total)
            buckets, total = m.wait.family_sample()
            wait.add_metric([queue, task], buckets, total)
            running[queue] = running.get(queue, 0) + m.running
        for queue, n in running.items():
            in_flight.add_metric([queue], n)
        return families
