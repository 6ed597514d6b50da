"""Workflows built from dependencies: :func:`chain` (each result passed to the next),
:func:`group` (in parallel) and :func:`chord` (a group, then a callback given the list of
their results). A workflow's jobs are enqueued in one transaction (all rows or none); each
step waits (``waiting``) until its parents are ``done`` and is released by the finish of
the last one (see docs/job-control.md#workflows).

A step that follows one job gets that job's result as its first argument; a step that
follows a group gets the list of the group's results (in the group's order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._errors import ConfigurationError
from ._ids import new_job_ids
from ._job import Job
from ._models import NO_OPTIONS, NewJob, Options
from ._store.values import Edge

FEED = "w"
"""The run option of a job fed its parents' results: ``"one"`` (the result of its one
parent) or ``"all"`` (the list of its parents' results, in the group's order)."""
PARENT = "p"
"""The run option of a step with children (a hint for the finish: see ``Finish.parent``)."""


class _GraphQueue(Protocol):
    """What a workflow needs of the queue (a ``Queue`` is one)."""

    name: str

    def _new_job(
        self,
        task: Any,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        opts: Options,
        trace: dict[str, str] | None = None,
        step: dict[str, Any] | None = None,
    ) -> NewJob: ...

    async def _enqueue_built(
        self, build: Callable[[dict[str, str] | None], tuple[list[NewJob], list[Edge]]]
    ) -> None: ...


@dataclass(frozen=True)
class Signature:
    """One call of a task in a workflow: ``task.s(*args, **kwargs)`` (or
    ``task.options(...).s(...)``); nothing is enqueued until the workflow is."""

    task: Any
    """The task to call (a :class:`Task` or :class:`BoundTask`)."""
    args: tuple[Any, ...] = ()
    """Positional arguments; a step after another gets that step's result before them."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments."""
    options: Options = NO_OPTIONS
    """Job options of this step (not ``after``, ``job_id`` or ``unique_key``: the
    workflow sets its steps' order)."""

    def __post_init__(self) -> None:
        if self.options.after or self.options.job_id or self.options.unique_key:
            raise ConfigurationError("a workflow step takes no after/job_id/unique_key option")

    async def enqueue(self) -> Job:
        """Enqueue this call alone, as ``task.options(...).enqueue(...)`` would."""
        job: Job = await self.task.queue._enqueue(
            self.task.name, self.args, self.kwargs, self.options
        )
        return job


@dataclass(frozen=True)
class Group:
    """Calls run in parallel: ``group(a.s(1), a.s(2))``."""

    steps: tuple[Signature, ...]
    """The calls, in the order of the results list a following step gets."""

    async def enqueue(self) -> list[Job]:
        """Enqueue every call (one transaction); returns their jobs, in order."""
        jobs = await _enqueue([self])
        return jobs[0]


@dataclass(frozen=True)
class Chain:
    """Steps run one after the other, each given the result of the one before (a group's
    list of results after a group)."""

    steps: tuple[Signature | Group, ...]
    """The steps, first to last."""

    async def enqueue(self) -> Job:
        """Enqueue the whole chain (one transaction); returns the job of its last step
        (whose ``result()`` is the chain's). A group as the last step: its first job."""
        jobs = await _enqueue(list(self.steps))
        return jobs[-1][0]

    async def enqueue_all(self) -> list[list[Job]]:
        """Enqueue the whole chain; returns the jobs of every step."""
        return await _enqueue(list(self.steps))


def chain(*steps: Signature | Group) -> Chain:
    """``chain(a.s(1), b.s(), c.s())``: ``b`` gets ``a``'s result as its first argument,
    ``c`` gets ``b``'s; if a step fails (after its retries) the rest are cancelled."""
    if not steps:
        raise ConfigurationError("chain() needs at least one step")
    return Chain(tuple(_step(s) for s in steps))


def group(*steps: Signature) -> Group:
    """``group(a.s(1), a.s(2), ...)``: jobs run in parallel (a group of one task over many
    arguments: ``group(*(a.s(i) for i in range(n)))``)."""
    if not steps:
        raise ConfigurationError("group() needs at least one call")
    for s in steps:
        if not isinstance(s, Signature):
            raise ConfigurationError(f"group() takes task.s(...) calls, got {s!r}")
    return Group(tuple(steps))


def chord(header: Group | Sequence[Signature], callback: Signature) -> Chain:
    """``chord(group(...), cb.s())``: ``cb`` runs once every job of the group is done,
    given the list of their results (in the group's order); if one fails, ``cb`` is
    cancelled (``cb.options(...)`` cannot change that: use ``after_failure="run"`` with
    ``options(after=...)`` for a callback that runs anyway)."""
    g = header if isinstance(header, Group) else group(*header)
    return chain(g, callback)


def _step(s: Any) -> Signature | Group:
    if isinstance(s, Signature | Group):
        return s
    raise ConfigurationError(f"a workflow step is task.s(...) or group(...), got {s!r}")


async def _enqueue(steps: list[Signature | Group]) -> list[list[Job]]:
    """Every step's jobs (a step's parents: every job of the step before it), inserted
    parents first in one transaction. The queue traces the whole workflow as one send
    (its one insert): ``build`` is given the trace context every job carries."""
    first = steps[0].steps[0] if isinstance(steps[0], Group) else steps[0]
    queue: _GraphQueue = first.task.queue
    out: list[list[Job]] = []

    def build(trace: dict[str, str] | None) -> tuple[list[NewJob], list[Edge]]:
        news: list[NewJob] = []
        edges: list[Edge] = []
        out.clear()
        before: list[str] = []
        feed: str | None = None
        # One ascending range of ids: a group's results are read back in id order, which
        # is then the group's order.
        n = sum(len(s.steps) if isinstance(s, Group) else 1 for s in steps)
        fresh = iter(new_job_ids(n))
        for k, step in enumerate(steps):
            has_next = k + 1 < len(steps)
            calls = step.steps if isinstance(step, Group) else (step,)
            ids = []
            for sig in calls:
                if sig.task.queue is not queue:
                    raise ConfigurationError("every step of a workflow must be on the same queue")
                step_options: dict[str, Any] = {FEED: feed} if feed else {}
                if has_next:
                    step_options[PARENT] = 1
                new = queue._new_job(
                    sig.task, sig.args, sig.kwargs, sig.options, trace, step=step_options
                )
                new = new._replace(id=next(fresh))
                news.append(new)
                ids.append(new.id)
                edges.extend(Edge(p, new.id) for p in before)
            out.append([Job(queue, i) for i in ids])  # type: ignore[arg-type]
            before = ids
            feed = "all" if isinstance(step, Group) else "one"
        return news, edges

    await queue._enqueue_built(build)
    return out
