"""Tasks: handlers registered with ``@queue.task``: ``async def`` functions, run on the
runner's loop, or plain ``def`` functions, run in the runner's thread pool."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from ._decisions import Backoff
from ._errors import ConfigurationError
from ._job import Job, JobOwner
from ._models import NO_OPTIONS, Options, validate_name
from ._ratelimit import RateKey, RateLimit, parse_rate
from ._sync import run_sync
from ._workflow import Signature

P = ParamSpec("P")
R = TypeVar("R")


class QueueHandle(JobOwner, Protocol):
    """What a :class:`Task` and a job's context hold of their queue (a ``Queue`` is one):
    enqueueing, job handles and cancellation, without the queue's registry or runner."""

    async def enqueue(self, task: str | Task[Any, Any], /, *args: Any, **kwargs: Any) -> Job: ...

    def job(self, job_id: str) -> Job: ...

    async def _enqueue(
        self, task: str, args: Sequence[Any], kwargs: dict[str, Any], opts: Options
    ) -> Job: ...


@dataclass(frozen=True, slots=True)
class TaskConfig:
    name: str
    retries: int
    timeout: float | None
    backoff: Backoff
    no_retry: tuple[type[BaseException], ...] = ()
    auto_commit: bool = True
    concurrency: int | None = None
    rate_limit: RateLimit | None = None
    """Starts admitted across every runner (``aqueue._ratelimit``)."""
    rate_key: RateKey | None = None


class Task(Generic[P, R]):
    """A registered handler. Calling it runs the plain function; ``.enqueue`` queues it
    (``.enqueue_sync`` from code without an event loop)."""

    def __init__(
        self, queue: QueueHandle, fn: Callable[P, Awaitable[R]], config: TaskConfig
    ) -> None:
        if inspect.isasyncgenfunction(fn) or not callable(fn):
            raise ConfigurationError(
                f"@queue.task needs an `async def` or a plain `def` function, got "
                f"{getattr(fn, '__qualname__', fn)!r}"
            )
        self.queue = queue
        self.fn = fn
        self.is_sync = not inspect.iscoroutinefunction(fn)
        """A plain ``def``: the runner calls it in its thread pool."""
        self.config = config
        self.name = config.name
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        return self.fn(*args, **kwargs)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Queue a run; returns once the job is durable in SQL."""
        return await self.queue._enqueue(self.name, args, kwargs, NO_OPTIONS)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """:meth:`enqueue` from code without a running event loop (a WSGI view, a script,
        a sync handler); thread-safe. See ``aqueue._sync``."""
        return run_sync(lambda: self.queue._enqueue(self.name, args, kwargs, NO_OPTIONS))

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This call as a workflow step (:func:`aqueue.chain`, ``group``, ``chord``); a
        step after another gets its result as an argument before ``args``."""
        return Signature(self, args, kwargs)

    def options(self, **options: Any) -> BoundTask[P, R]:
        """Job options (``delay``, ``run_at``, ``priority``, ``job_id``, ``unique_key``,
        ``retries``, ``timeout``, ``expires``, ``connection``: the fields of
        :class:`aqueue.Options`) kept apart from the handler's own keyword arguments."""
        return BoundTask(self, Options.of(**options))

    def __repr__(self) -> str:
        return f"<Task {self.name} of queue {self.queue.name!r}>"


class BoundTask(Generic[P, R]):
    """A task with job options bound, as returned by ``task.options(...)``:
    ``await send.options(delay=30).enqueue(42)``. The options never mix with the
    handler's own arguments."""

    def __init__(self, task: Task[P, R], options: Options) -> None:
        self.task = task
        self.opts = options

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue one job with these options; returns once it is durable in SQL."""
        return await self.task.queue._enqueue(self.task.name, args, kwargs, self.opts)

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """:meth:`enqueue` from code without a running event loop."""
        return run_sync(lambda: self.task.queue._enqueue(self.task.name, args, kwargs, self.opts))

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """This call, with these options, as a workflow step (see :meth:`Task.s`)."""
        return Signature(self.task, args, kwargs, self.opts)


def make_config(
    fn: Callable[..., Any],
    *,
    name: str | None,
    retries: int,
    timeout: float | None,
    backoff: Backoff,
    no_retry: tuple[type[BaseException], ...],
    auto_commit: bool = True,
    concurrency: int | None = None,
    rate_limit: str | None = None,
    rate_burst: int = 1,
    rate_key: RateKey | None = None,
) -> TaskConfig:
    task_name = validate_name(name or fn.__name__, "task name")
    if not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"retries must be an int >= 0, got {retries!r}")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ConfigurationError(f"concurrency must be an int >= 1, got {concurrency!r}")
    limit = None if rate_limit is None else parse_rate(rate_limit, rate_burst)
    if rate_limit is None and (rate_key is not None or rate_burst != 1):
        raise ConfigurationError("rate_key and rate_burst need a rate_limit")
    if rate_key is not None and not callable(rate_key):
        raise ConfigurationError(f"rate_key must be callable(args, kwargs), got {rate_key!r}")
    return TaskConfig(
        task_name,
        retries,
        timeout,
        backoff,
        no_retry,
        auto_commit,
        concurrency,
        rate_limit=limit,
        rate_key=rate_key,
    )
