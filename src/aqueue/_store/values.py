"""The values the job store's operations exchange: claims, finishes, reclaims, searches
and dependency edges (the interface itself is ``base.JobStore``). Times are UNIX
microseconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .._models import JobStatus

Commit = Callable[[], Awaitable[None]]
"""An open claim's commit (:meth:`JobStore.claim_open`): to await before anything is
recorded for the jobs it claimed. Raises ``StoreError`` when the commit failed (the claim
is then taken again with :meth:`JobStore.claim_again`)."""


@dataclass(frozen=True, slots=True)
class Finish:
    """One finished attempt to record (fenced by the claim's lease token)."""

    id: str
    token: str
    status: JobStatus
    result: str | None = None
    error: str | None = None
    run_at: int | None = None  # for a retry (status todo)
    parent: bool = False
    """A hint: the job was enqueued with children (a workflow step), so its final finish
    goes straight to the transaction that releases them."""


@dataclass(frozen=True, slots=True)
class ClaimState:
    """What the store says of a job whose claim was lost."""

    status: JobStatus | None
    run_at: int
    leased_until: int | None
    stalls: int = 0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Claim:
    """Claim ``items``, ``(job id, stalls, attempts)`` as the messages carry them, for
    ``owner`` under one lease ``token`` until ``leased_until`` (µs, like ``now``)."""

    items: Sequence[tuple[str, int, int]]
    owner: str
    token: str
    leased_until: int
    now: int


@dataclass(frozen=True, slots=True)
class Reclaim:
    """The decision for one expired lease: where the job goes, and why."""

    id: str
    token: str
    status: JobStatus
    error: str | None


@dataclass(frozen=True, slots=True)
class JobQuery:
    """The jobs of ``queue`` that an operator's read or bulk action names: those matching
    every field given. ``text`` is a substring of the arguments or the error (case
    sensitive, every character literal); ``created_from``/``created_to`` bound ``created_at``
    (µs, the second one excluded); ``before_id`` continues a page: the jobs come newest
    first (by id, descending: ids are in creation order to the millisecond) and the next
    page starts below the last id shown."""

    queue: str
    statuses: tuple[JobStatus, ...] = ()
    """Any of these statuses (none: every status)."""
    task: str | None = None
    """Jobs of this task only."""
    job_id: str | None = None
    """The job with this id only."""
    text: str | None = None
    created_from: int | None = None
    created_to: int | None = None
    before_id: str | None = None
    tag: str | None = None
    """Only the jobs tagged so (``Options.tags``)."""
    from_id: str | None = None
    """Only the jobs with this id or a higher one: the bottom of a bounded scan window
    (see :meth:`JobStore.scan_floor`)."""


@dataclass(frozen=True, slots=True)
class Edge:
    """``child`` waits for ``parent``; ``run_on_failure``: it runs even if the parent
    fails or is cancelled (otherwise it is cancelled with the reason)."""

    parent: str
    child: str
    run_on_failure: bool = False


def fences(items: Sequence[tuple[str, int, int]]) -> dict[str, tuple[int, int]]:
    """The ``(stalls, attempts)`` each job's claim is fenced by. Two copies of one job in
    a batch: the later one (as the store moves them, both only grow, until a repush); the
    copy that matches the store is never dropped when the claim loses
    (``decide_claim_loss``)."""
    out: dict[str, tuple[int, int]] = {}
    for job_id, stalls, attempts in items:
        prev = out.get(job_id)
        out[job_id] = (stalls, attempts) if prev is None else max(prev, (stalls, attempts))
    return out
