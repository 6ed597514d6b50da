"""The job store's interface: the named operations the producer and the runner use (the
values they exchange are in ``values``). Any store (SQL here, in memory in
``aqueue.testing``) implements :class:`JobStore`; nothing above the store package names a
concrete one, except the place that constructs it.

Every state change is a compare-and-set: it applies only to rows still in the state the
caller expects (``todo``, ``running`` under a given lease token, ...) and reports which
rows it changed; nothing reads and then writes. Times are UNIX microseconds (``now``,
``before``, ``leased_until``), on the store's clock when it has one of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .._models import IdRun, JobRecord, JobStatus, NewJob
from .values import Claim, ClaimState, Commit, Edge, Finish, JobQuery, Reclaim


class JobStore(Protocol):
    """Where jobs are persisted: the named operations of the job lifecycle.

    Errors: a failure of the store itself raises ``StoreError`` (a ``BackendError``);
    :meth:`insert_jobs` raises ``EnqueueOutcomeUnknownError`` when the jobs may or may not
    have been stored. ``asyncio.CancelledError`` always propagates.
    """

    @property
    def single_writer(self) -> bool:
        """True when the store runs one write at a time (SQLite): a second statement in
        flight would only queue behind the first, so callers use fewer parallel lanes and
        larger batches."""
        ...

    @property
    def shares_clock(self) -> bool:
        """True when the store's clock is this machine's (SQLite, memory): there is no
        offset between them to measure with :meth:`server_time_us`."""
        ...

    async def close(self) -> None:
        """Release every connection; the store is not used afterwards."""
        ...

    # -- schema ---------------------------------------------------------------------

    async def schema_version(self) -> int | None:
        """The schema version recorded in the store, ``None`` when it has no tables."""
        ...

    async def init_schema(self) -> int:
        """Create the tables when missing (safe when several processes do it at once);
        return the schema version found or created. Raises ``ConfigurationError`` when it
        is not this aqueue's version (older: run the upgrade; newer: upgrade aqueue)."""
        ...

    async def upgrade_schema(self) -> tuple[int, int]:
        """Migrate to this aqueue's schema version: returns ``(before, after)``, ``before``
        0 when there were no tables (created now)."""
        ...

    async def drop_schema(self) -> None:
        """Drop the tables (tests and tools)."""
        ...

    async def server_time_us(self) -> int:
        """The store's clock, now (UNIX µs)."""
        ...

    # -- enqueue --------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: int) -> list[str | BaseException]:
        """Insert new ``todo`` jobs (``attempts`` and ``stalls`` 0, ``updated_at`` ``now``)
        with as few writes as possible. Returns, per job in order, the id that now stands
        for it (its own, or the existing job's when a live job of its queue holds its
        ``unique_key``), or the exception that affects only that job (a conflict on an
        explicit id, a row refused). A write whose outcome is unknown raises
        ``EnqueueOutcomeUnknownError``; one certainly refused as a whole raises
        ``StoreError``. A job's ``tags`` are stored with it (the ``tags`` column and a
        row per tag in the tags table), atomically with its row."""
        ...

    # -- claim / finish -------------------------------------------------------------

    async def claim(self, c: Claim, *, again: bool = False) -> set[str]:
        """Move to ``running`` under ``c.token`` (owner, ``leased_until``, attempts + 1,
        ``updated_at`` and, when unset, ``dispatched_at`` = ``c.now``) the jobs of
        ``c.items`` that are ``todo``, due (``run_at <= c.now``) and have the stall and
        attempt counts their message carries (:func:`fences`): a stale copy (one made
        before a reclaim, a retry or a repush; the copy made by whoever wrote the job last
        carries the store's counts) cannot claim. Returns the ids won. ``again``: the
        token was used before (a claim whose commit failed, taken again): jobs already held
        under it count as won."""
        ...

    async def claim_again(self, c: Claim) -> tuple[set[str], set[str]]:
        """Take a claim again whose commit failed (rolled back, or its outcome unknown),
        under the same token: returns ``(held, retaken)``, the ids whose first claim had
        committed after all (``running`` under this token) and the ids claimed now. An id
        in neither was claimed elsewhere meanwhile (or can no longer run)."""
        ...

    async def claim_open(self, c: Claim) -> tuple[set[str], Commit | None]:
        """:meth:`claim` with its commit left to the caller: returns the ids won and the
        commit to await before anything is recorded for them (``None``: nothing to
        commit, the claim is already durable). Other writers cannot take the claimed jobs
        meanwhile. A store that cannot hold a claim open commits it at once."""
        ...

    async def claim_states(self, ids: Sequence[str]) -> dict[str, ClaimState]:
        """The state of these jobs (whose claim was lost); a missing id: no such job."""
        ...

    async def release_claims(self, items: Sequence[tuple[str, str]], now: int) -> int:
        """Give back claimed jobs that did not start, by ``(id, token)``: those still
        ``running`` under that token become ``todo`` (lease cleared, attempt given back,
        no stall counted, ``updated_at`` ``now``). Returns how many."""
        ...

    async def finish(self, items: Sequence[Finish], now: int) -> set[str]:
        """Record finished attempts, each only if its job is still ``running`` under its
        token. ``done``/``failed``/``cancelled``: final (result or error, ``finished_at``
        ``now``, unique key released). ``todo`` (a retry): lease cleared, ``run_at`` (or
        ``now``), error kept, not marked dispatched. ``updated_at`` is ``now``. Returns
        the ids accepted (a late finish after a lost lease is refused)."""
        ...

    async def finish_release(
        self, items: Sequence[Finish], now: int
    ) -> tuple[set[str], list[JobRecord]]:
        """:meth:`finish`, and the children its final finishes released: in the same
        transaction, each ``waiting`` child of a job finished ``done`` (or failed or
        cancelled, for a child that runs anyway) counts one parent less and becomes
        ``todo`` (updated ``now``, not marked dispatched) when none is left; a child of
        a failed or cancelled job is cancelled (with its own children). Returns the ids
        accepted and the children now ``todo`` (to dispatch)."""
        ...

    async def insert_with_parents(
        self, jobs: Sequence[NewJob], edges: Sequence[Edge], now: int
    ) -> dict[str, JobStatus]:
        """Insert ``jobs`` (a parent in ``jobs`` before its children) and the ``edges``
        they wait on, all or none: a job whose parents are all ``done`` is ``todo``, one
        with a failed or cancelled parent (and no ``run_on_failure``) ``cancelled``, else
        ``waiting``. Raises ``ConfigurationError`` for a parent that does not exist.
        Returns each job's starting status."""
        ...

    async def parent_results(self, child: str) -> list[tuple[str, JobStatus, str | None]]:
        """The id, status and stored result of each parent ``child`` was enqueued with
        (finished before it or not), in id order."""
        ...

    async def set_progress(
        self, job_id: str, token: str, progress: float, message: str | None
    ) -> bool:
        """Record a running job's progress (``progress``, ``progress_message``) if it is
        still ``running`` under ``token``; False when the lease is gone."""
        ...

    async def renew(self, items: Sequence[tuple[str, str]], leased_until: int) -> set[str]:
        """Set ``leased_until`` of the jobs still ``running`` under these ``(id, token)``
        claims; return the ids whose lease is gone (token revoked, job reclaimed, repushed,
        cancelled or deleted)."""
        ...

    async def release_owner(
        self, queue: str, owner: str, now: int, *, keep: Sequence[str] = ()
    ) -> int:
        """Put back every job of ``queue`` still ``running`` under ``owner`` except
        ``keep`` (graceful shutdown, once the owner's handlers have all stopped; ``keep``:
        handlers that ignored their cancellation): ``todo``, lease cleared, attempt given
        back. Returns how many."""
        ...

    async def fail_unclaimed(self, job_id: str, error: str, now: int) -> bool:
        """Fail a ``todo`` job that cannot be run (malformed message): ``failed`` with
        ``error``, ``finished_at`` ``now``, ``run_at`` brought forward to ``now`` if
        later, unique key released. False when it was not ``todo``."""
        ...

    # -- reads ----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job as stored, ``None`` when there is no such job."""
        ...

    async def count_by_status(self, queue: str) -> dict[JobStatus, int]:
        """How many jobs of ``queue`` are in each status (every status present, 0 or
        more)."""
        ...

    async def ids_by_status(self, queue: str, status: JobStatus, limit: int) -> list[str]:
        """Up to ``limit`` ids of ``queue``'s jobs in ``status``, in id order."""
        ...

    async def unfinished_count(self, queue: str, now: int) -> int:
        """Jobs of ``queue`` that are ``running``, or ``todo`` and due at ``now``."""
        ...

    async def waiting_jobs(self, queue: str, cap: int) -> int:
        """The ``todo`` jobs of ``queue`` (due or delayed), counted up to ``cap`` (the
        count stops there: ``max_size`` needs to know only whether it is reached)."""
        ...

    # -- dispatch marks and recovery --------------------------------------------------

    async def dispatchable(
        self, queue: str, after_id: str, limit: int, now: int
    ) -> list[JobRecord]:
        """Keyset page (id order, ids after ``after_id``) of jobs of ``queue`` that should
        be in the broker: ``todo``, or ``running`` with a lease expired before ``now``."""
        ...

    async def mark_dispatched(
        self,
        marks: Sequence[tuple[str, int]],
        epoch: str,
        now: int,
        runs: Sequence[tuple[IdRun, int]] = (),
        *,
        unmarked_only: bool = False,
    ) -> None:
        """Set ``dispatched_at`` = ``now`` and ``dispatch_epoch`` = ``epoch`` on jobs
        whose message reached the broker's dataset ``epoch``. Each job comes with the
        ``updated_at`` of the write its message was pushed after and is marked only if
        that is still its ``updated_at`` (a late mark must not cover a later write's
        message): ``marks`` are ``(id, written_at)``, ``runs`` ranges of batch ids
        (``IdRun``: ids between ``first`` and ``last`` created at ``created_at``) with
        theirs. ``unmarked_only``: rows that already carry a mark are left alone."""
        ...

    async def undispatched(
        self, queue: str, epoch: str, written_before: int, after_id: str, limit: int
    ) -> list[JobRecord]:
        """Keyset page (id order, ids after ``after_id``) of ``todo`` jobs of ``queue``
        that the broker's dataset ``epoch`` may not hold: not marked since their last
        write and that write before ``written_before``, or marked under another (or no)
        epoch."""
        ...

    async def expired_leases(self, queue: str, before: int, limit: int) -> list[JobRecord]:
        """Up to ``limit`` ``running`` jobs of ``queue`` whose lease ended before
        ``before``, oldest lease first."""
        ...

    async def reclaim(self, items: Sequence[Reclaim], before: int, now: int) -> set[str]:
        """Apply reclaim decisions to jobs still ``running`` under the token read and
        whose lease still ended before ``before``: the stall is counted, the lease
        cleared; to ``todo`` (attempt given back, ``run_at`` ``now``, not marked
        dispatched) or to a final status (``error``, ``finished_at`` ``now``, unique key
        released); ``updated_at`` ``now``. Returns the ids changed."""
        ...

    async def owner_running(self, queue: str, owner: str) -> int:
        """How many jobs of ``queue`` are ``running`` under ``owner``."""
        ...

    # -- job control ----------------------------------------------------------------

    async def repush(self, job_id: str, now: int, *, force: bool) -> JobRecord | None:
        """Put a job back to ``todo`` with fresh attempts and stalls (lease, result,
        error, ``finished_at`` and dispatch mark cleared, ``run_at`` ``now``). A
        ``running`` job only with ``force``: its token is revoked and its ``run_at``
        becomes the end of its old lease, by which time its runner has noticed and
        cancelled the handler. Returns the job as it now stands (``None``: no
        such job)."""
        ...

    async def cancel(self, job_id: str, reason: str, now: int) -> bool:
        """``waiting``/``todo``/``running`` -> ``cancelled`` (error ``reason``,
        ``finished_at`` ``now``, ``run_at`` brought forward to ``now`` if later, token
        revoked, unique key released), with the jobs waiting on it (the children of a
        job cancelled are settled as after a failure). A running job's runner cancels the
        handler at its next lease renewal, and its finish is refused. False when the job
        was not ``waiting``, ``todo`` or ``running``."""
        ...

    async def purge_finished(self, queue: str, before: int, limit: int = 5000) -> int:
        """Delete the jobs of ``queue`` that finished (done/failed/cancelled) before
        ``before``, ``limit`` at a time. Returns how many were deleted."""
        ...

    async def purge_queue(self, queue: str) -> int:
        """Delete every job of ``queue``. Returns how many."""
        ...

    # -- operators' reads and bulk actions ---------------------------------------------

    async def find_jobs(self, query: JobQuery, limit: int) -> list[JobRecord]:
        """Up to ``limit`` jobs matching ``query``, newest first (descending id: ids are in
        creation order to the millisecond)."""
        ...

    async def scan_floor(self, queue: str, before_id: str | None, rows: int) -> str | None:
        """The lowest id of the newest ``rows`` jobs of ``queue`` (below ``before_id``
        when given): a search that no index serves reads that window only (``from_id``),
        in primary key order. ``None``: fewer jobs than that are left."""
        ...

    async def count_by_status_bounded(
        self, queue: str, cap: int
    ) -> dict[JobStatus, tuple[int, bool]]:
        """Per status (every one present): the number of ``queue``'s jobs and whether it
        is exact. Up to ``cap`` jobs of a status are counted (one index range each); past
        that, the figure is the database's own estimate (never below ``cap``)."""
        ...

    async def oldest_due(self, queue: str, now: int) -> int | None:
        """The ``run_at`` of the longest-waiting ``todo`` job of ``queue`` due at ``now``
        (``None``: none is waiting): how old the backlog is."""
        ...

    async def finished_counts(
        self, queue: str, since: int, bucket: int, due_after: int
    ) -> list[tuple[int, JobStatus, int]]:
        """Jobs of ``queue`` finished at or after ``since`` and last due (``run_at``) at
        or after ``due_after``, counted per ``bucket`` µs (its start: ``finished_at -
        finished_at % bucket``) and final status, in any order: the throughput and
        failure rate over time. ``due_after`` lets the ``(queue, status, run_at)`` index
        bound the rows read (``run_at`` is never after ``finished_at``): a job that
        waited or ran longer than ``since - due_after`` is not counted."""
        ...

    async def repush_jobs(self, queue: str, ids: Sequence[str], now: int) -> list[JobRecord]:
        """:meth:`repush` of each of ``ids`` that is a job of ``queue`` and not
        ``running`` (without ``force``); returns the jobs repushed, as they now stand (to
        be dispatched: to ``queue``'s lists, which is why another queue's are left)."""
        ...

    async def cancel_jobs(self, queue: str, ids: Sequence[str], reason: str, now: int) -> set[str]:
        """:meth:`cancel` of each of ``ids`` that is a job of ``queue``; returns the ids
        cancelled."""
        ...

    async def delete_jobs(self, queue: str, ids: Sequence[str]) -> int:
        """Delete each of ``ids`` that is a job of ``queue`` and not ``running`` (a
        queued job's message is then dropped by the runner that takes it: its claim finds
        no row). Returns how many."""
        ...

    # -- schedules ------------------------------------------------------------------

    async def first_seen(self, key: str, now: int) -> int:
        """When the schedule ``key`` was first seen (UNIX µs): ``now`` if never before,
        and then recorded; every caller reads the same time (the first record wins)."""
        ...
