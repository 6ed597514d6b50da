"""Registration: the decorators that declare tasks, cron and periodic schedules,
lifecycle hooks and middleware (no I/O). What they fill is what the runner reads
(``aqueue._registry.Registry``). A mixin of the client (see ``aqueue._queue``); it sits
above :class:`Enqueuing` because a registered :class:`Task` holds the client it
enqueues through.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from .._cron import MissedPolicy, Schedule, validate_cron
from .._decisions import Backoff
from .._errors import ConfigurationError
from .._ratelimit import RateKey
from .._registry import AfterHook, Hook, JobHook, Middleware
from .._task import Task, make_config
from .enqueue import Enqueuing

P = ParamSpec("P")
R = TypeVar("R")


class TaskDecorator(Protocol):
    """What ``@queue.task(...)`` with options returns: it takes an ``async def`` or a
    plain ``def``."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class Registration(Enqueuing):
    """Declares what a queue runs and around what."""

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...  # a sync handler

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
        rate_limit: str | None = None,
        rate_burst: int = 1,
        rate_key: RateKey | None = None,
    ) -> TaskDecorator: ...

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
        rate_limit: str | None = None,
        rate_burst: int = 1,
        rate_key: RateKey | None = None,
    ) -> Task[P, R] | TaskDecorator:
        """Register a handler: an ``async def``, or a plain ``def`` that the runner calls in
        its thread pool (``RunnerConfig.threads``). ``retries``: further attempts after a
        failure (default ``default_retries``); ``timeout``: seconds per attempt;
        ``no_retry``: exception types that fail the job at once; ``auto_commit=False``:
        the handler records its outcome itself with ``current_job().commit(...)``;
        ``concurrency``: most runs of this task at once in one runner;
        ``rate_limit``: most starts per period across every runner and process
        (``"100/s"``, ``"5000/m"``, ``"10/5s"``), ``rate_burst`` of them back to back,
        per ``rate_key(args, kwargs)`` when given (see docs/job-control.md, "Rate
        limits")."""

        def register(f: Callable[P, Any]) -> Task[P, R]:
            config = make_config(
                f,
                name=name,
                retries=self.default_retries if retries is None else retries,
                timeout=timeout,
                backoff=backoff or self.backoff,
                no_retry=tuple(no_retry),
                auto_commit=auto_commit,
                concurrency=concurrency,
                rate_limit=rate_limit,
                rate_burst=rate_burst,
                rate_key=rate_key,
            )
            t: Task[P, R] = Task(self, f, config)
            if config.name in self.tasks:
                raise ConfigurationError(f"task {config.name!r} is already registered")
            self.tasks[config.name] = t
            return t

        if fn is not None:
            return register(fn)
        return cast(TaskDecorator, register)

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
