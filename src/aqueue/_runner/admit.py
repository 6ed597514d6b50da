"""Rate limits on the runner's side: which tasks have one, and asking the limiter
(one Redis call for a batch) before the batch is claimed.

A message the limit does not admit yet is moved by that same call from the working list
to the delayed set, due at the time reserved for it: it is not claimed (no SQL write,
no attempt used, the row stays ``todo`` and marked dispatched, so the sweeper leaves
it be) and its slot is free at once. Tasks without a rate limit never reach this
module's Redis call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import BackendError
from .._message import Message
from .._ratelimit import RateKey, RateLimit, job_key, limiter_key

if TYPE_CHECKING:
    from .._backend import Backend

log = logging.getLogger("aqueue.runner")


@dataclass(frozen=True, slots=True)
class TaskLimit:
    """A task's rate limit and its key function."""

    task: str
    limit: RateLimit
    key: RateKey | None

    def state_key(self, tag: str, msg: Message) -> str:
        """The limiter state this job counts under. A ``rate_key`` that raises is a bug
        in the application: the job is then counted under the task's own limit (logged)
        rather than run unlimited or left undeliverable."""
        try:
            key = job_key(self.key, msg.args, msg.kwargs)
        except Exception:
            log.exception("rate_key of task %s raised for job %s", self.task, msg.id)
            key = None
        return limiter_key(tag, self.task, key)


def task_limits(tasks: Mapping[str, Any]) -> dict[str, TaskLimit]:
    """The tasks with a rate limit (``tasks``: the queue's registered ``Task`` objects)."""
    out: dict[str, TaskLimit] = {}
    for name, task in tasks.items():
        limit = getattr(task.config, "rate_limit", None)
        if limit is not None:
            out[name] = TaskLimit(name, limit, task.config.rate_key)
    return out


async def admit(
    be: Backend,
    runner_id: str,
    msgs: list[Message],
    limits: Mapping[str, TaskLimit],
    give_back: Callable[[bytes], Awaitable[None]],
) -> list[Message]:
    """The messages of ``msgs`` that may be claimed now: those of tasks without a limit,
    and those their limit admits. If Redis fails, the limited messages are given back
    (``give_back``: due again at once) rather than run unchecked."""
    tag = be.broker.keys.tag
    free: list[Message] = []
    asked: list[Message] = []
    requests: list[tuple[str, str, int, int, bytes]] = []
    for m in msgs:
        lim = limits.get(m.task)
        if lim is None:
            free.append(m)
            continue
        asked.append(m)
        rl = lim.limit
        requests.append((lim.state_key(tag, m), m.id, rl.interval_us, rl.tolerance_us, m.raw))
    if not requests:
        return msgs
    try:
        waits = await be.broker.admit(runner_id, requests)
    except BackendError as exc:
        log.warning("asking the rate limiter failed (%s); giving %d job(s) back", exc, len(asked))
        for m in asked:
            await give_back(m.raw)
        return free
    deferred = 0
    for m, wait in zip(asked, waits, strict=True):
        if wait == 0:
            free.append(m)
        else:
            deferred += 1
    if deferred:
        log.debug("rate limits deferred %d of %d job(s)", deferred, len(asked))
    return free


__all__ = ["TaskLimit", "admit", "task_limits"]
