"""Run one handler: hooks, middleware, timeout; turn the outcome into a decision."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._context import JobContext, _current
from .._decisions import decide_failure
from .._errors import Retry, SerializationError, UnknownTaskError
from .._models import JobStatus, Message
from .._serde import dumps, encode_error

if TYPE_CHECKING:
    from .._queue import Queue

log = logging.getLogger("aqueue.runner")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: JobStatus
    result: str | None = None
    error: str | None = None
    run_at: int | None = None
    exc: BaseException | None = None


def _chain(
    queue: Queue, ctx: JobContext, call: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    for mw in reversed(queue.middlewares):

        def make(
            mw: Any = mw, nxt: Callable[[], Awaitable[Any]] = call
        ) -> Callable[[], Awaitable[Any]]:
            async def step() -> Any:
                return await mw(ctx, nxt)

            return step

        call = make()
    return call


async def execute(queue: Queue, ctx: JobContext, msg: Message, now: Callable[[], int]) -> Outcome:
    """Run the handler for ``msg``; never raises except ``CancelledError``."""
    task = queue.tasks.get(msg.task)
    if task is None:
        exc: BaseException = UnknownTaskError(
            f"unknown task {msg.task!r}: no handler registered on queue {queue.name!r} in "
            "this runner"
        )
        return Outcome(JobStatus.FAILED, error=encode_error(exc), exc=exc)
    token = _current.set(ctx)
    try:
        for hook in queue.before_hooks:
            await hook(ctx)

        async def call() -> Any:
            return await task.fn(*msg.args, **msg.kwargs)

        chained = _chain(queue, ctx, call)
        timeout = task.config.timeout
        try:
            if timeout is None:
                value = await chained()
            else:
                async with asyncio.timeout(timeout) as cm:
                    value = await chained()
        except TimeoutError as e:
            if timeout is not None and cm.expired():
                raise TimeoutError(f"task {msg.task} timed out after {timeout}s") from e
            raise
        try:
            result = dumps(value, "the job's result")
        except SerializationError as e:
            return _failure(task.config, msg, e, now(), retryable=False)
        return Outcome(JobStatus.DONE, result=result)
    except asyncio.CancelledError:
        raise
    except Retry as e:
        return _failure(task.config, msg, e, now(), retryable=True, delay=e.delay)
    except Exception as e:
        retryable = not isinstance(e, task.config.no_retry)
        return _failure(task.config, msg, e, now(), retryable=retryable)
    finally:
        _current.reset(token)


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
        max_attempts=msg.max_attempts,
        now=now,
        retryable=retryable,
        backoff=config.backoff,
        requested_delay=delay,
    )
    status = JobStatus.TODO if decision.status == "todo" else JobStatus.FAILED
    return Outcome(status, error=encode_error(exc), run_at=decision.run_at, exc=exc)
