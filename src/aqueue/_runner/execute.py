"""Run one handler: hooks, middleware, timeout; turn the outcome into a decision."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._context import JobContext, _current
from .._decisions import decide_failure
from .._errors import (
    JobExpiredError,
    RateLimited,
    Retry,
    SerializationError,
    UnknownTaskError,
)
from .._message import Message
from .._models import JobStatus
from .._serde import dumps, encode_error

if TYPE_CHECKING:
    from .._registry import Registry
    from .threads import ThreadPool

log = logging.getLogger("aqueue.runner")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: JobStatus | None
    """None: nothing to record (a manual-commit task returned; it committed or not)."""
    result: str | None = None
    error: str | None = None
    run_at: int | None = None
    exc: BaseException | None = None


Call = Callable[[], Awaitable[Any]]


def _chain(queue: Registry, ctx: JobContext, call: Call) -> Call:
    for mw in reversed(queue.middlewares):

        def make(mw: Any = mw, nxt: Call = call) -> Call:
            async def step() -> Any:
                return await mw(ctx, nxt)

            return step

        call = make()
    return call


async def execute(
    queue: Registry,
    ctx: JobContext,
    msg: Message,
    now: Callable[[], int],
    threads: ThreadPool | None = None,
) -> Outcome:
    """Run the handler for ``msg``; never raises except ``CancelledError``. A sync
    handler runs in ``threads`` (see ``threads``). The progress the handler reported
    and did not write yet is written before the outcome is returned (to be recorded)."""
    try:
        outcome = await _run_handler(queue, ctx, msg, now, threads)
    except BaseException:
        if ctx._progress is not None:
            ctx._progress.cancel()
        raise
    await ctx._end_progress()
    return outcome


async def _run_handler(
    queue: Registry,
    ctx: JobContext,
    msg: Message,
    now: Callable[[], int],
    threads: ThreadPool | None,
) -> Outcome:
    expires = msg.options.get("expires")
    if isinstance(expires, int) and now() > expires:
        exc: BaseException = JobExpiredError(
            msg.id, f"job {msg.id} was not started before its deadline ({expires} µs)"
        )
        return Outcome(JobStatus.FAILED, error=encode_error(exc), exc=exc)
    task = queue.tasks.get(msg.task)
    if task is None:
        exc = UnknownTaskError(
            f"unknown task {msg.task!r}: no handler registered on queue {queue.name!r} in "
            "this runner"
        )
        return Outcome(JobStatus.FAILED, error=encode_error(exc), exc=exc)
    token = _current.set(ctx)
    try:
        for hook in queue.before_hooks:
            await hook(ctx)

        timeout = msg.options.get("timeout") or task.config.timeout
        fn: Callable[..., Awaitable[Any]] = task.fn
        if task.is_sync:
            fn = _in_thread(threads, msg.id, task.fn)
        if timeout is None and not queue.middlewares:
            value = await fn(*msg.args, **msg.kwargs)  # the usual case, one frame less
        else:

            async def call() -> Any:
                return await fn(*msg.args, **msg.kwargs)

            chained = _chain(queue, ctx, call)
            if timeout is None:
                value = await chained()
            else:
                value = await _with_timeout(chained, timeout, msg.task, msg.id)
        if not task.config.auto_commit:
            return Outcome(None)
        try:
            result = dumps(value, "the job's result")
        except SerializationError as e:
            return _failure(task.config, msg, e, now(), retryable=False)
        return Outcome(JobStatus.DONE, result=result)
    except RateLimited as e:
        # Put back, never failed, whatever attempt this was (the runner gives the attempt
        # back): hooks and metrics see a job going back to ``todo``.
        run_at = now() + int(e.retry_after * 1e6)
        return Outcome(JobStatus.TODO, error=encode_error(e), run_at=run_at, exc=e)
    except Retry as e:
        return _failure(task.config, msg, e, now(), retryable=True, delay=e.delay)
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError) and cancelled_by_aqueue():
            raise
        # Anything else fails this attempt like any exception, under the task's retry
        # policy: SystemExit, KeyboardInterrupt, GeneratorExit, and a CancelledError the
        # handler raised itself (nothing cancelled this task). A handler, hook or
        # middleware raising SystemExit must not stop the runner, which would die with
        # the job claimed and no attempt counted; every runner taking it next would too.
        retryable = not isinstance(e, task.config.no_retry)
        return _failure(task.config, msg, e, now(), retryable=retryable)
    finally:
        _current.reset(token)


def _in_thread(
    threads: ThreadPool | None, job_id: str, sync_fn: Callable[..., Any]
) -> Callable[..., Awaitable[Any]]:
    if threads is None:
        raise RuntimeError("a sync handler runs only in a runner (its thread pool)")
    pool = threads

    async def call(*args: Any, **kwargs: Any) -> Any:
        return await pool.call(job_id, sync_fn, args, kwargs)

    return call


def cancelled_by_aqueue() -> bool:
    """Whether a ``CancelledError`` seen now comes from a cancellation of this task (by
    the runner: lease revoked, local deadline passed, shutdown), as opposed to one the
    handler raised on its own."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


async def run_after_hooks(queue: Registry, ctx: JobContext, outcome: Outcome) -> None:
    """The ``after_job`` hooks: each one's failure, whatever its type (``SystemExit``
    included), is logged and contained; only a cancellation of this task goes on."""
    if outcome.status is None:
        return
    for hook in queue.after_hooks:
        try:
            await hook(ctx, outcome.status, outcome.exc)
        except BaseException as e:  # SystemExit included: a hook must not stop the runner
            if isinstance(e, asyncio.CancelledError) and cancelled_by_aqueue():
                raise
            log.exception("after_job hook failed for job %s", ctx.job_id)


ABANDON_AFTER = 1.0
"""Seconds a timed-out handler gets to honour its cancellation before it is abandoned."""

_abandoned: dict[asyncio.Task[Any], str] = {}
"""Handlers that ignored their cancellation and were left running: task -> job id."""


def abandoned_jobs() -> set[str]:
    """Ids of jobs whose handler was abandoned and may still run."""
    return set(_abandoned.values())


def _abandon(inner: asyncio.Task[Any], job_id: str) -> None:
    _abandoned[inner] = job_id
    inner.add_done_callback(lambda t: _abandoned.pop(t, None))


async def _with_timeout(call: Call, timeout: float, name: str, job_id: str) -> Any:
    """Run the handler in its own task so the time limit holds even when the handler
    swallows its cancellation: after ``ABANDON_AFTER`` more seconds it is left behind
    (logged) and the slot is freed. Cancelled from outside (a shutdown, a revoked
    lease), it waits for the handler's own cancellation as long, so that whoever
    cancelled it knows the handler has stopped (or was abandoned) when it returns."""
    inner = asyncio.ensure_future(_contained(call))
    try:
        done, _ = await asyncio.wait({inner}, timeout=timeout)
    except asyncio.CancelledError:
        inner.cancel()
        stopped, _ = await asyncio.wait({inner}, timeout=ABANDON_AFTER)
        if not stopped:
            log.error("task %s ignored its cancellation: abandoning it", name)
            _abandon(inner, job_id)
        raise
    if done:
        try:
            return inner.result()
        except _Escaped as e:
            raise e.exc from None
    inner.cancel()
    done, _ = await asyncio.wait({inner}, timeout=ABANDON_AFTER)
    if not done:
        log.error(
            "task %s ignored its cancellation after its %ss timeout: abandoning it (it may "
            "go on running in the background)",
            name,
            timeout,
        )
        _abandon(inner, job_id)
    elif not inner.cancelled() and inner.exception() is None:
        return inner.result()  # it finished right at the deadline
    raise TimeoutError(f"task {name} timed out after {timeout}s")


class _Escaped(Exception):
    """Carries a ``SystemExit`` or ``KeyboardInterrupt`` out of the handler's own task:
    raised in a task, asyncio hands those to the event loop (which then stops), not to
    the task's awaiter."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(type(exc).__name__)
        self.exc = exc


async def _contained(call: Call) -> Any:
    try:
        return await call()
    except (SystemExit, KeyboardInterrupt) as e:
        raise _Escaped(e) from None


def _failure(
    config: Any,
    msg: Message,
    exc: BaseException,
    now: int,
    *,
    retryable: bool,
    delay: float | None = None,
) -> Outcome:
    decision = decide_failure(
        attempt=msg.attempts + 1,
        max_attempts=msg.max_attempts or config.retries + 1,
        now=now,
        retryable=retryable,
        backoff=config.backoff,
        requested_delay=delay,
    )
    status = JobStatus.TODO if decision.status == "todo" else JobStatus.FAILED
    return Outcome(status, error=encode_error(exc), run_at=decision.run_at, exc=exc)
