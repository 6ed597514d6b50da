"""The producer side of a queue: its task registry, configuration, enqueue, job control
and admin reads (:class:`QueueClient`). ``aqueue.Queue`` (``_app``) adds the runner on
top; this module never imports ``_runner``, nor ``_runner`` this one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, ParamSpec, Self, TypeVar, overload

from ._backend import Backend
from ._broker.base import FinishWaiters, MessageBroker
from ._broker.broker import Broker
from ._broker.notify import FinishListener
from ._cron import MissedPolicy, Schedule, validate_cron
from ._decisions import Backoff
from ._dispatch import Dispatcher
from ._errors import (
    AqueueError,
    BrokerError,
    CommitError,
    ConfigurationError,
    EnqueueOutcomeUnknownError,
    JobError,
    JobNotFoundError,
    QueueFullError,
    UnknownTaskError,
)
from ._ids import new_job_id, new_job_ids, now_us
from ._job import Job
from ._models import NO_OPTIONS, JobStatus, NewJob, Options, validate_name
from ._registry import AfterHook, Hook, JobHook, Middleware
from ._serde import dumps, encode_payload, encode_reason
from ._store.base import Finish, JobStore
from ._store.batcher import Batcher
from ._store.marker import DispatchMarker
from ._store.store import Store
from ._task import Task, make_config

log = logging.getLogger("aqueue")
# What ``QueueClient._parts_factory`` returns: the store, broker and finish listener a
# queue runs on.
PartsFactory = Callable[[], Awaitable[tuple[JobStore, MessageBroker, FinishWaiters]]]
P = ParamSpec("P")
R = TypeVar("R")


class QueueClient:
    """Everything of :class:`aqueue.Queue` but running it: registration, configuration,
    the backend (connected at first use), enqueue, job control and admin reads."""

    def __init__(
        self,
        name: str,
        *,
        redis_url: str | None = None,
        database_url: str | None = None,
        table: str = "aqueue_jobs",
        key_prefix: str = "aq",
        init_db: bool = True,
        max_payload_bytes: int = 1024 * 1024,
        default_retries: int = 12,
        backoff: Backoff | None = None,
        home: str | None = None,
        strict_tasks: bool | None = None,
        enqueue_batch: int | None = None,
        sql_lock_wait_timeout: int = 5,
        max_size: int | None = None,
    ) -> None:
        self.name = validate_name(name, "queue name")
        self.key_prefix = validate_name(key_prefix, "key prefix")
        from ._models import validate_identifier

        self.table = validate_identifier(table, "table name")
        self._redis_url = redis_url or os.environ.get("AQUEUE_REDIS_URL") or None
        self._database_url = database_url or os.environ.get("AQUEUE_DATABASE_URL") or None
        self._home = home
        self.init_db = init_db
        if not isinstance(max_payload_bytes, int) or max_payload_bytes <= 0:
            raise ConfigurationError("max_payload_bytes must be a positive int")
        self.max_payload_bytes = max_payload_bytes
        self.default_retries = default_retries
        self.backoff = backoff or Backoff()
        self.strict_tasks = strict_tasks
        # Rows per INSERT: 9 parameters each, under SQLite's 32,766. None: 500 on MySQL,
        # where a larger batch (an enqueue_many call, a burst of producers) goes as several
        # statements at once on up to four connections (2 x 500 rows stored 62-67k rows/s
        # here, 1 x 1,000 50k); 1,000 on SQLite, which writes one statement at a time.
        if enqueue_batch is not None and (
            not isinstance(enqueue_batch, int) or not 1 <= enqueue_batch <= 3000
        ):
            raise ConfigurationError("enqueue_batch must be an int from 1 to 3000 (or None)")
        self.enqueue_batch = enqueue_batch
        self.sql_lock_wait_timeout = sql_lock_wait_timeout
        if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
            raise ConfigurationError("max_size must be an int >= 1 (or None)")
        self.max_size = max_size
        # max_size: (when counted, jobs waiting then plus those this producer added since)
        self._size_seen: tuple[float, int] = (0.0, 0)
        self._exec_allowed: frozenset[str] = frozenset()
        self.schedules: dict[str, Schedule] = {}
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.before_hooks: list[JobHook] = []
        self.after_hooks: list[AfterHook] = []
        self.middlewares: list[Middleware] = []
        self._be: Backend | None = None
        # A private injection point (used by ``aqueue.testing``): when set, ``_connect``
        # runs the queue on the parts this async factory returns (store, broker, finish
        # listener) instead of building them from the URLs.
        self._parts_factory: PartsFactory | None = None
        self._be_lock: asyncio.Lock | None = None
        self._be_lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} tasks={len(self.tasks)}>"

    # -- registration ---------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        no_retry: Iterable[type[BaseException]] = (),
        auto_commit: bool = True,
        concurrency: int | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], Task[P, R]]: ...

    def task(  # type: ignore[misc]
        self,
        fn: Callable[P, Awaitable[R]] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        no_retry: Iterable[type[BaseException]] = (),
        auto_commit: bool = True,
        concurrency: int | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, Awaitable[R]]], Task[P, R]]:
        """Register an ``async def`` handler. ``retries``: further attempts after a
        failure (default ``default_retries``); ``timeout``: seconds per attempt;
        ``no_retry``: exception types that fail the job at once; ``auto_commit=False``:
        the handler records its outcome itself with ``current_job().commit(...)``;
        ``concurrency``: most runs of this task at once in one runner."""

        def register(f: Callable[P, Awaitable[R]]) -> Task[P, R]:
            config = make_config(
                f,
                name=name,
                retries=self.default_retries if retries is None else retries,
                timeout=timeout,
                backoff=backoff or self.backoff,
                no_retry=tuple(no_retry),
                auto_commit=auto_commit,
                concurrency=concurrency,
            )
            t: Task[P, R] = Task(self, f, config)
            if config.name in self.tasks:
                raise ConfigurationError(f"task {config.name!r} is already registered")
            self.tasks[config.name] = t
            return t

        if fn is not None:
            return register(fn)
        return register

    def cron(
        self,
        expr: str,
        *,
        name: str | None = None,
        missed: MissedPolicy = "latest",
        catch_up: float = 3600.0,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[[], Awaitable[R]]], Task[[], R]]:
        """Register an argument-less ``async def`` run at each tick of a cron expression
        (UTC), enqueued once per tick however many runners run. ``missed``: what to do
        with ticks missed while no runner was up (``latest``, ``all`` or ``skip``, within
        ``catch_up`` seconds)."""
        validate_cron(expr)
        return self._scheduled(
            Schedule("", cron=expr, missed=missed, catch_up=catch_up), name, retries, timeout
        )

    def periodic(
        self,
        *,
        every: float,
        name: str | None = None,
        missed: MissedPolicy = "latest",
        catch_up: float = 3600.0,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[[], Awaitable[R]]], Task[[], R]]:
        """Like :meth:`cron`, every ``every`` seconds (ticks aligned on multiples of it)."""
        if not isinstance(every, int | float) or every < 0.01:
            raise ConfigurationError("every must be a number of seconds >= 0.01")
        return self._scheduled(
            Schedule("", every=float(every), missed=missed, catch_up=catch_up),
            name,
            retries,
            timeout,
        )

    def _scheduled(
        self, sched: Schedule, name: str | None, retries: int | None, timeout: float | None
    ) -> Callable[[Callable[[], Awaitable[R]]], Task[[], R]]:
        if sched.missed not in ("latest", "all", "skip"):
            raise ConfigurationError("missed must be 'latest', 'all' or 'skip'")

        def register(fn: Callable[[], Awaitable[R]]) -> Task[[], R]:
            t = self.task(name=name, retries=retries, timeout=timeout)(fn)
            self.schedules[t.name] = dataclasses.replace(sched, task=t.name)
            return t

        return register

    def on_startup(self, fn: Hook) -> Hook:
        """``async def fn(state: dict)``: run when a runner starts, before any job."""
        self.startup_hooks.append(fn)
        return fn

    def on_shutdown(self, fn: Hook) -> Hook:
        """``async def fn(state: dict)``: run when a runner stops, after the last job."""
        self.shutdown_hooks.append(fn)
        return fn

    def before_job(self, fn: JobHook) -> JobHook:
        """``async def fn(ctx: JobContext)``: run before each job's handler."""
        self.before_hooks.append(fn)
        return fn

    def after_job(self, fn: AfterHook) -> AfterHook:
        """``async def fn(ctx, status, exc)``: run after each attempt (``status`` is what
        the attempt leads to: done, todo for a retry, failed)."""
        self.after_hooks.append(fn)
        return fn

    def middleware(self, fn: Middleware) -> Middleware:
        """``async def fn(ctx, call_next) -> result``: wraps each handler call; the first
        registered is outermost."""
        self.middlewares.append(fn)
        return fn

    # -- connection -----------------------------------------------------------------

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._be_lock is None or self._be_lock_loop is not loop:
            self._be_lock = asyncio.Lock()
            self._be_lock_loop = loop
        return self._be_lock

    async def _backend(self) -> Backend:
        be = self._be
        loop = asyncio.get_running_loop()
        if be is not None and be.loop is loop:
            return be
        async with self._lock():
            if self._be is not None and self._be.loop is loop:
                return self._be
            self._be = await self._connect(loop)
            return self._be

    async def _resolve_urls(self) -> tuple[str, str]:
        redis_url, db_url = self._redis_url, self._database_url
        if redis_url and db_url:
            return redis_url, db_url
        from . import _embedded

        home = _embedded.embedded_dir(self._home)
        if not db_url:
            db_url = _embedded.sqlite_url(home)
        if not redis_url:
            redis_url = await asyncio.to_thread(_embedded.ensure_embedded_redis, home)
        log.info("aqueue embedded default in %s", home)
        return redis_url, db_url

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Backend:
        if self._parts_factory is not None:
            store, broker, listener = await self._parts_factory()
        else:
            store, broker, listener = await self._connect_parts()
        marker = DispatchMarker(store)
        dispatcher = Dispatcher(broker)
        inserter: Batcher[NewJob, str] = Batcher(
            "enqueue",
            lambda jobs: self._flush_inserts(store, dispatcher, marker, jobs),
            max_items=self.enqueue_batch or (1000 if store.single_writer else 500),
            max_bytes=8 * 1024 * 1024,
            size_of=lambda j: len(j.payload) + 200,
            parallel=1 if store.single_writer else 4,
        )
        return Backend(loop, self.name, store, broker, inserter, marker, listener, dispatcher)

    async def _connect_parts(self) -> tuple[JobStore, MessageBroker, FinishWaiters]:
        redis_url, db_url = await self._resolve_urls()
        store = Store(db_url, table=self.table, lock_wait_timeout=self.sql_lock_wait_timeout)
        broker = Broker(redis_url, self.key_prefix, self.name)
        try:
            if self.init_db:
                await store.init_schema()
        except BaseException:
            await store.close()
            await broker.close()
            raise
        return store, broker, FinishListener(broker.redis, broker.keys.finished)

    async def connect(self) -> None:
        """Connect now (create the schema when ``init_db``) instead of at first use."""
        await self._backend()

    async def close(self) -> None:
        be, self._be = self._be, None
        if be is None:
            return
        await be.inserter.close()
        await be.marker.close()
        await be.listener.close()
        await be.broker.close()
        await be.store.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- enqueue ----------------------------------------------------------------------

    def options(self, **options: Any) -> BoundQueue:
        """Job options (the fields of :class:`Options`) for the enqueues made through the
        result: ``await queue.options(delay=5).enqueue("task", *args, **kwargs)``."""
        return BoundQueue(self, Options(**options))

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
        self, task: str | Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], opts: Options
    ) -> NewJob:
        name, max_attempts = self._resolve_task(task, opts)
        now = now_us()
        payload = encode_payload(
            tuple(args), dict(kwargs), self.max_payload_bytes, opts.run_options(now)
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
        )

    def _new_jobs(
        self,
        calls: Iterable[tuple[str | Task[Any, Any], Sequence[Any], dict[str, Any]]],
        opts: Options,
    ) -> list[NewJob]:
        """``_new_job`` for a batch: one clock reading, one id range, each task checked
        once."""
        calls = list(calls)
        now = now_us()
        run_options, run_at = opts.run_options(now), opts.start_time_us(now)
        limit, queue, priority = self.max_payload_bytes, self.name, opts.priority
        resolved: dict[str, tuple[str, int]] = {}
        jobs: list[NewJob] = []
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
            payload = encode_payload(args, kwargs, limit, run_options)
            jobs.append(NewJob(job_id, queue, known[0], payload, priority, known[1], run_at, now))
        return jobs

    async def _enqueue(
        self, task: str | Task[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], opts: Options
    ) -> Job:
        new = self._new_job(task, args, kwargs, opts)
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
        news = self._new_jobs(calls, opts)
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

    async def _flush_inserts(
        self,
        store: JobStore,
        dispatcher: Dispatcher,
        marker: DispatchMarker,
        jobs: Sequence[NewJob],
    ) -> list[str | BaseException]:
        now = now_us()
        results = await store.insert_jobs(jobs, now)
        stored = [j for j, r in zip(jobs, results, strict=True) if r == j.id]
        if not stored:
            return results  # none stored (or each a duplicate of another job)
        try:
            epoch = await dispatcher.new_jobs(stored, now)
        except BrokerError as exc:
            # The jobs are durable; the sweeper puts them in Redis once it is back.
            log.warning("jobs stored but not dispatched (%s); the sweeper will", exc)
        else:
            assert epoch is not None
            marker.add_jobs(stored, now, epoch)
        return results

    # -- reading ----------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        """A handle on an existing job by id."""
        return Job(self, job_id)

    async def commit(
        self,
        job_id: str,
        token: str,
        status: str | JobStatus,
        *,
        result: Any = None,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        """Record a job's outcome from anywhere with its lease token (a manual commit
        made outside the handler, e.g. by another system): ``done`` (with ``result``),
        ``failed`` (with ``error``) or ``todo`` (run again after ``delay``). Raises
        :class:`CommitError` when the token does not hold the job any more."""
        st = JobStatus(status)
        if st not in (JobStatus.DONE, JobStatus.FAILED, JobStatus.TODO):
            raise CommitError(f"cannot commit a job as {st.value!r}")
        be = await self._backend()
        now = now_us()
        run_at = now + int(max(0.0, delay or 0.0) * 1e6)
        finish = Finish(
            job_id,
            token,
            st,
            result=dumps(result, "the job's result") if st is JobStatus.DONE else None,
            error=None if st is JobStatus.DONE else encode_reason("Committed", error or st.value),
            run_at=run_at if st is JobStatus.TODO else None,
        )
        if job_id not in await be.store.finish([finish], now):
            raise CommitError(
                f"commit of job {job_id} rejected: the token does not hold it (wrong token, "
                "lease lost, or already finished)"
            )
        if st is JobStatus.TODO:
            rec = await be.store.get_job(job_id)
            if rec is not None:
                epoch = await be.dispatcher.rows([rec], now)
                if epoch is not None:
                    be.marker.add([job_id], rec.updated_at, epoch)

    async def repush(self, job_id: str, *, force: bool = False) -> Job:
        """Force a job back to ``todo`` with fresh attempts and into Redis, whatever its
        state. A ``running`` job is refused unless ``force``: then
        its lease token is revoked, its runner cancels the handler at its next renewal,
        and the job may start again only when the old lease would have ended — never two
        runs at once."""
        be = await self._backend()
        now = now_us()
        rec = await be.store.repush(job_id, now, force=force)
        if rec is None:
            raise JobNotFoundError(job_id, f"no job {job_id}")
        if rec.status is JobStatus.RUNNING:
            raise JobError(job_id, f"job {job_id} is running: pass force=True to repush it")
        epoch = await be.dispatcher.rows([rec], now)
        if epoch is not None:
            be.marker.add([job_id], rec.updated_at, epoch)
        return Job(self, job_id)

    async def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Cancel a job that has not finished: a queued one never runs; a running one has
        its coroutine cancelled on whichever runner holds it (at that runner's next lease
        renewal, within ``heartbeat`` seconds) and its outcome is not recorded. Returns
        False when the job had already finished."""
        be = await self._backend()
        rec = await be.store.get_job(job_id)
        if rec is None:
            raise JobNotFoundError(job_id, f"no job {job_id}")
        ok = await be.store.cancel(job_id, encode_reason("Cancelled", reason), now_us())
        if ok:
            with contextlib.suppress(BrokerError):
                await be.broker.notify_finished([job_id])
        return ok

    async def purge_finished(self, older_than: float) -> int:
        """Delete this queue's finished jobs (and their results) that finished more than
        ``older_than`` seconds ago. Runners also do it
        periodically when ``RunnerConfig.keep_results`` is set."""
        be = await self._backend()
        return await be.store.purge_finished(self.name, now_us() - int(older_than * 1e6))

    async def runner_stats(self) -> dict[str, dict[str, int]]:
        """Per-runner counters (executed, done, failed, retried, ...) published by the
        live runners of this queue at every heartbeat."""
        be = await self._backend()
        return await be.broker.runner_stats()

    def allow_exec(self, programs: Iterable[str], *, timeout: float | None = 3600) -> None:
        """Enable executable tasks (a program run as a job) for these programs (names or
        absolute paths), on producers and runners alike; ``timeout`` is the default
        run-time limit. See :meth:`exec`."""
        from ._exec import EXEC_TASK, run_program

        allowed = frozenset(programs)
        self._exec_allowed = self._exec_allowed | allowed
        if EXEC_TASK not in self.tasks:
            queue = self

            async def run_exec(
                argv: list[str],
                timeout: float | None = None,
                cwd: str | None = None,
                env: dict[str, str] | None = None,
                stdin: str | None = None,
            ) -> dict[str, Any]:
                return await run_program(argv, queue._exec_allowed, timeout, cwd, env, stdin)

            self.task(name=EXEC_TASK, timeout=timeout, retries=0)(run_exec)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        options: Options | None = None,
    ) -> Job:
        """Queue a program run: its stdout becomes the result; a non-zero exit code or a
        timeout fails it with the exit code and stderr. Only programs allowed with
        :meth:`allow_exec` are accepted (checked here and again on the runner)."""
        from ._exec import EXEC_TASK, check_allowed

        check_allowed(list(argv), self._exec_allowed)
        kwargs: dict[str, Any] = {"argv": list(argv), "timeout": timeout}
        if cwd is not None:
            kwargs["cwd"] = cwd
        if env is not None:
            kwargs["env"] = env
        if stdin is not None:
            kwargs["stdin"] = stdin
        return await self._enqueue(EXEC_TASK, (), kwargs, options or Options())

    async def job_ids(self, status: str | JobStatus, limit: int = 1000) -> list[str]:
        """Ids of this queue's jobs in ``status`` (oldest first)."""
        be = await self._backend()
        return await be.store.ids_by_status(self.name, JobStatus(status), limit)

    async def counts(self) -> dict[JobStatus, int]:
        """Number of jobs of this queue in each status (from SQL)."""
        be = await self._backend()
        return await be.store.count_by_status(self.name)

    async def purge(self) -> int:
        """Delete every job of this queue from SQL and its keys from Redis."""
        be = await self._backend()
        n = await be.store.purge_queue(self.name)
        await be.broker.purge()
        return n


class BoundQueue:
    """A queue with job options bound, as returned by ``queue.options(...)``: its
    ``enqueue`` and ``enqueue_many`` apply them to every job."""

    def __init__(self, queue: QueueClient, options: Options) -> None:
        self._queue = queue
        self._opts = options

    async def enqueue(self, task: str | Task[Any, Any], /, *args: Any, **kwargs: Any) -> Job:
        return await self._queue._enqueue(task, args, kwargs, self._opts)

    async def enqueue_many(
        self, calls: Iterable[tuple[str | Task[Any, Any], Sequence[Any], dict[str, Any]]]
    ) -> list[Job]:
        return await self._queue.enqueue_many(calls, options=self._opts)


__all__ = ["AqueueError", "QueueClient"]
