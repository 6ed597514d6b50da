"""Enqueue: a call checked and made into a job (task resolved, payload encoded, id and
times set), the queue's size limit, and the job handed to the insert batcher, which
returns once it is durable in SQL. A mixin of the client (see ``aqueue._queue``); it
sits above :class:`JobControl` because the jobs it returns are handles that can be
cancelled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import _observe
from .._backend import Backend
from .._errors import (
    BrokerError,
    ConfigurationError,
    EnqueueOutcomeUnknownError,
    QueueFullError,
    UnknownTaskError,
)
from .._ids import new_job_id, new_job_ids
from .._job import Job
from .._models import NO_OPTIONS, JobStatus, NewJob, Options, validate_name
from .._serde import encode_payload
from .._store.caller import connection_of, insert_on, sql_store
from .._store.values import Edge
from .._task import Task
from .control import JobControl
from .outbox import after_commit

log = logging.getLogger("aqueue")


class Enqueuing(JobControl):
    """Makes jobs from calls and stores them."""

    async def enqueue(self, task: str | Task[Any, Any], /, *args: Any, **kwargs: Any) -> Job:
        """Queue ``task`` (a name or a Task) with these arguments; returns once the job is
        durable in SQL."""
        return await self._enqueue(task, args, kwargs, NO_OPTIONS)

    def _resolve_task(self, task: str | Task[Any, Any], opts: Options) -> tuple[str, int]:
        """The task's name and the job's ``max_attempts``, or a clear error."""
        name = task.name if isinstance(task, Task) else task
        if not isinstance(name, str):
            raise UnknownTaskError(f"task must be a task name or a Task, got {task!r}")
        t = self.tasks.get(name)
        strict = self.strict_tasks if self.strict_tasks is not None else bool(self.tasks)
        if t is None and strict:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(f"unknown task {name!r} on queue {self.name!r} (known: {known})")
        if t is None:  # a registered task's name was checked when it was registered
            validate_name(name, "task name")
        # A producer that does not know the task leaves the retries to the runner that
        # does (max_attempts 0 = "the task's own").
        retries = (
            opts.retries
            if opts.retries is not None
            else (t.config.retries if t is not None else -1)
        )
        return name, retries + 1

    def _new_job(
        self,
        task: str | Task[Any, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        opts: Options,
        trace: dict[str, str] | None = None,
        step: dict[str, Any] | None = None,
    ) -> NewJob:
        """``step``: a workflow step's run options (``_workflow``: its input, and whether
        it has children)."""
        name, max_attempts = self._resolve_task(task, opts)
        now = self._clock()
        run_options = _traced(opts.run_options(now), trace)
        if step:
            run_options = {**(run_options or {}), **step}
        payload = encode_payload(
            tuple(args),
            dict(kwargs),
            self.max_payload_bytes,
            run_options,
            self.compress_over,
            self.compression,
        )
        return NewJob(
            id=opts.job_id or new_job_id(),
            queue=self.name,
            task=name,
            payload=payload,
            priority=opts.priority,
            max_attempts=max_attempts,
            run_at=opts.start_time_us(now),
            created_at=now,
            unique_key=opts.unique_key,
            explicit_id=opts.job_id is not None,
            tags=tuple(opts.tags or ()),
        )

    def _new_jobs(
        self,
        calls: Iterable[tuple[str | Task[Any, Any], Sequence[Any], dict[str, Any]]],
        opts: Options,
        trace: dict[str, str] | None = None,
    ) -> list[NewJob]:
        """``_new_job`` for a batch: one clock reading, one id range, each task checked
        once."""
        calls = list(calls)
        now = self._clock()
        run_options, run_at = _traced(opts.run_options(now), trace), opts.start_time_us(now)
        limit, queue, priority = self.max_payload_bytes, self.name, opts.priority
        compress_over, compression = self.compress_over, self.compression
        resolved: dict[str, tuple[str, int]] = {}
        jobs: list[NewJob] = []
        tags = tuple(opts.tags or ())
        for call, job_id in zip(calls, new_job_ids(len(calls)), strict=True):
            try:
                task, args, kwargs = call
                args, kwargs = tuple(args), dict(kwargs)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"enqueue_many takes (task, args, kwargs) tuples, got {call!r}: {exc}"
                ) from None
            name = task.name if isinstance(task, Task) else task
            known = resolved.get(name) if isinstance(name, str) else None
            if known is None:
                known = self._resolve_task(task, opts)
                resolved[known[0]] = known
            payload = encode_payload(args, kwargs, limit, run_options, compress_over, compression)
            jobs.append(
                NewJob(job_id, queue, known[0], payload, priority, known[1], run_at, now, tags=tags)
            )
        return jobs

    async def _enqueue(
        self, task: str | Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], opts: Options
    ) -> Job:
        observer = _observe.active
        if observer is None:
            return await self._enqueue_new(self._new_job(task, args, kwargs, opts), opts)
        scope = observer.sending(self.name)
        try:
            new = self._new_job(task, args, kwargs, opts, scope.carrier)
            scope.sent((new,))
            job = await self._enqueue_new(new, opts)
        except BaseException as exc:
            scope.close(exc)
            raise
        scope.close(None)
        return job

    async def _enqueue_new(self, new: NewJob, opts: Options) -> Job:
        if opts.after:
            run = opts.after_failure == "run"
            edges = [Edge(p, new.id, run) for p in opts.after]
            await self._enqueue_graph([new], edges, opts)
            return Job(self, new.id)
        if opts.connection is not None:
            result = (await self._store_in(opts.connection, [new]))[0]
            if isinstance(result, BaseException):
                raise result
            return Job(self, result)
        be = await self._backend()
        await self._check_size(be, 1)
        try:
            job_id = await be.inserter.submit(new)
        except EnqueueOutcomeUnknownError as exc:
            raise EnqueueOutcomeUnknownError(new.id, exc.reason) from exc
        return Job(self, job_id)

    async def enqueue_many(
        self,
        calls: Iterable[tuple[str | Task[Any, Any], Sequence[Any], dict[str, Any]]],
        *,
        options: Options | None = None,
    ) -> list[Job]:
        """Queue many jobs at once: ``calls`` yields ``(task, args, kwargs)``. Every job is
        checked before any is stored; returns once all are durable. The jobs' ids count up
        from one random prefix (see ``new_job_ids``): unique, not secret."""
        opts = options or Options()
        if opts.job_id is not None or opts.unique_key is not None:
            raise ConfigurationError("enqueue_many takes no job_id/unique_key option")
        observer = _observe.active
        if observer is None:
            return await self._enqueue_news(self._new_jobs(calls, opts), opts)
        # One PRODUCER span for the whole batch (its context is every job's parent): a
        # span per job would cost more than the insert of a thousand jobs.
        scope = observer.sending(self.name)
        try:
            news = self._new_jobs(calls, opts, scope.carrier)
            scope.sent(news)
            jobs = await self._enqueue_news(news, opts)
        except BaseException as exc:
            scope.close(exc)
            raise
        scope.close(None)
        return jobs

    async def _enqueue_news(self, news: list[NewJob], opts: Options) -> list[Job]:
        if opts.after:
            run = opts.after_failure == "run"
            edges = [Edge(p, j.id, run) for j in news for p in opts.after]
            await self._enqueue_graph(news, edges, opts)
            return [Job(self, j.id) for j in news]
        if opts.connection is not None:
            results = await self._store_in(opts.connection, news)
            return [Job(self, r) if isinstance(r, str) else _raise(r) for r in results]
        be = await self._backend()
        await self._check_size(be, len(news))
        results = await be.inserter.submit_many(news)
        jobs = []
        for new, r in zip(news, results, strict=True):
            if isinstance(r, EnqueueOutcomeUnknownError):
                raise EnqueueOutcomeUnknownError(new.id, r.reason) from r
            if isinstance(r, BaseException):
                raise r
            jobs.append(Job(self, r))
        return jobs

    async def _enqueue_built(
        self, build: Callable[[dict[str, str] | None], tuple[list[NewJob], list[Edge]]]
    ) -> None:
        """Jobs with parents made by ``build`` (a workflow), given the trace context to
        carry: traced as ``enqueue_many`` is, one PRODUCER span for the one insert, whose
        context is every job's parent."""
        observer = _observe.active
        if observer is None:
            await self._enqueue_graph(*build(None))
            return
        scope = observer.sending(self.name)
        try:
            news, edges = build(scope.carrier)
            scope.sent(news)
            await self._enqueue_graph(news, edges)
        except BaseException as exc:
            scope.close(exc)
            raise
        scope.close(None)

    async def _enqueue_graph(
        self, news: list[NewJob], edges: list[Edge], opts: Options = NO_OPTIONS
    ) -> dict[str, JobStatus]:
        """Jobs with parents (``news`` ordered parents first): every row in one
        transaction, then the jobs that can run at once are pushed, as any new job."""
        if opts.connection is not None:
            raise ConfigurationError("a job with parents cannot be enqueued in a transaction")
        if any(j.explicit_id or j.unique_key for j in news):
            raise ConfigurationError("a job with parents takes no job_id/unique_key option")
        be = await self._backend()
        await self._check_size(be, len(news))
        now = self._clock()
        states = await be.store.insert_with_parents(news, edges, now)
        ready = [j for j in news if states[j.id] is JobStatus.TODO]
        if ready:
            await _push(be, ready, now)
        return states

    async def _store_in(self, caller: object, news: list[NewJob]) -> list[str | BaseException]:
        """Transactional enqueue: the rows are inserted in the caller's transaction (one
        statement; see ``_store.caller``) and pushed to Redis after it commits (see
        ``outbox``); nothing is committed or rolled back here."""
        be = await self._backend()
        store = sql_store(be.store)
        conn = await connection_of(store, caller)
        await self._check_size(be, len(news))
        now = self._clock()
        results = await insert_on(store, conn, news, now)
        stored = [j for j, r in zip(news, results, strict=True) if r == j.id]
        if stored:
            after_commit(caller, conn, lambda: _push(be, stored, now))
        return results

    async def _check_size(self, be: Backend, adding: int) -> None:
        """The queue size limit (``max_size``), over the jobs that can still run (``todo``,
        due or delayed) as SQL counts them: never refused, cancelled or finished jobs.
        A count is reused for 0.2 s, plus what this producer enqueued since (so
        concurrent producers can overshoot by what they enqueue within that window); a
        refusal is always made on a new count, as jobs may have run or been cancelled
        since (a bounded one: see ``waiting_jobs``)."""
        limit = self.max_size
        if limit is None:
            return
        counted_at, size = self._size_seen
        if time.monotonic() - counted_at > 0.2 or size + adding > limit:
            size = await be.store.waiting_jobs(self.name, limit + 1)
            counted_at = time.monotonic()
        if size + adding > limit:
            self._size_seen = (counted_at, size)
            shown = str(size) if size <= limit else f"over {limit}"
            raise QueueFullError(f"queue {self.name!r} is full ({shown} waiting, max_size={limit})")
        # counted before it is stored: concurrent enqueues of this producer see it
        self._size_seen = (counted_at, size + adding)


def _traced(
    run_options: dict[str, Any] | None, trace: dict[str, str] | None
) -> dict[str, Any] | None:
    """The run options with the producer's trace context (stored in the payload, so
    with the row and in every message of the job, retries included)."""
    if trace is None:
        return run_options
    return {**(run_options or {}), _observe.TRACE_OPTION: trace}


def _raise(exc: BaseException) -> Job:
    raise exc


async def _push(be: Backend, stored: Sequence[NewJob], now: int) -> None:
    """Send jobs stored by a caller's committed transaction, then mark them dispatched
    (so the sweeper does not send them again), as ``_flush_inserts`` does."""
    try:
        epoch = await be.dispatcher.new_jobs(stored, now)
    except BrokerError as exc:
        log.warning("jobs committed but not dispatched (%s); the sweeper will", exc)
        return
    assert epoch is not None
    be.marker.add_jobs(stored, now, epoch)
