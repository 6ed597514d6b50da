"""A workflow step's input: the results of its parents, read from SQL when it runs (so a
step released by a finish, sent by the sweeper or run again after a crash gets the same
input), put before its own arguments."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .._context import JobContext
from .._errors import BackendError
from .._message import Message
from .._models import JobStatus
from .._registry import Registry
from .._store.base import JobStore
from .._workflow import FEED
from .execute import Outcome, _failure, execute
from .threads import ThreadPool


def fed_args(mode: Any, parents: list[tuple[str, JobStatus, str | None]]) -> Any:
    """``"one"``: the result of the one parent; ``"all"``: the list of the parents'
    results (``None`` for a parent that failed, for a step that runs anyway)."""
    values = [
        json.loads(result) if status is JobStatus.DONE and result is not None else None
        for _, status, result in parents
    ]
    if mode == "one":
        return values[0] if values else None
    return values


async def execute_fed(
    store: JobStore,
    queue: Registry,
    ctx: JobContext,
    msg: Message,
    now: Callable[[], int],
    threads: ThreadPool | None = None,
) -> Outcome:
    """:func:`execute` with the parents' results as the first argument. A store error
    while reading them fails the attempt (retried as any failure)."""
    try:
        parents = await store.parent_results(msg.id)
    except BackendError as exc:
        task = queue.tasks.get(msg.task)
        if task is None:
            return await execute(queue, ctx, msg, now, threads)
        return _failure(task.config, msg, exc, now(), retryable=True)
    value = fed_args(msg.options.get(FEED), parents)
    return await execute(queue, ctx, msg._replace(args=[value, *msg.args]), now, threads)
