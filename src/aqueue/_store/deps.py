"""Dependencies between jobs: what a new job with parents starts as, and what the final
finish of a parent does to its children. The plans are pure (the memory store uses them
too); the SQL store runs them in one transaction each (:func:`insert_with_parents`,
:func:`finish_parents`).

Every plan is made on rows the transaction holds locked (the parents flagged by the
insert, the finishing parents and their waiting children): nothing else can change them
between the read and the write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .._errors import ConfigurationError, StoreError
from .._models import JobRecord, JobStatus, NewJob
from .._serde import encode_reason
from .driver import DriverConn
from .executor import Executor, insert_failure
from .sql import BaseQueries, Statement, record
from .sql.deps import ROWS_PER_INSERT, DepsQueries, is_bad
from .sql.tags import TagQueries
from .tags import tag_in
from .values import Edge, Finish


@dataclass(frozen=True, slots=True)
class NewState:
    """How a new job with parents starts: ``waiting`` (``parents_left`` > 0), ``todo``
    (every parent done already) or ``cancelled`` (``error``: a parent failed)."""

    status: JobStatus
    parents_left: int
    error: str | None = None


def parent_failed(parent: str, status: JobStatus) -> str:
    """The error of a job cancelled because its parent failed or was cancelled."""
    return encode_reason("DependencyFailed", f"parent job {parent} ended {status.value}")


def plan_new(
    jobs: Sequence[NewJob], edges: Sequence[Edge], known: Mapping[str, JobStatus]
) -> tuple[dict[str, NewState], list[Edge]]:
    """The starting state of each new job, and the edges to store: every edge of a job
    not cancelled (its parents' results are read through them when it runs); only those
    to parents not final count in ``parents_left``. ``known``: the states of the parents
    that are not in ``jobs``; a parent in ``jobs`` must come before its children."""
    order = {j.id: k for k, j in enumerate(jobs)}
    by_child: dict[str, list[Edge]] = {}
    for e in edges:
        if e.child not in order:
            raise ConfigurationError(f"edge {e.parent} -> {e.child}: the child is not enqueued")
        if e.parent in order:
            if order[e.parent] >= order[e.child]:
                raise ConfigurationError(f"job {e.child} comes before its parent {e.parent}")
        elif e.parent not in known:
            raise ConfigurationError(f"parent job {e.parent} of job {e.child} does not exist")
        by_child.setdefault(e.child, []).append(e)
    states: dict[str, NewState] = {}
    live: list[Edge] = []
    for j in jobs:
        left, error = 0, None
        for e in by_child.get(j.id, ()):
            st = states[e.parent].status if e.parent in order else known[e.parent]
            live.append(e)
            if st is JobStatus.DONE:
                continue
            if is_bad(st):
                if not e.run_on_failure and error is None:
                    error = parent_failed(e.parent, st)
                continue
            left += 1
        if error is not None:
            states[j.id] = NewState(JobStatus.CANCELLED, 0, error)
        elif left:
            states[j.id] = NewState(JobStatus.WAITING, left)
        else:
            states[j.id] = NewState(JobStatus.TODO, 0)
    cancelled = {i for i, s in states.items() if s.status is JobStatus.CANCELLED}
    return states, [e for e in live if e.child not in cancelled]


@dataclass(slots=True)
class ReleasePlan:
    """What the finish of some parents does to their waiting children."""

    cancel: list[tuple[str, str]]
    """(child, error): a parent failed or was cancelled."""
    count_down: list[tuple[str, int]]
    """(child, parents left): still waiting."""
    release: list[str]
    """Children whose last parent finished: to ``todo``."""


def plan_release(
    finished: Mapping[str, JobStatus],
    edges: Iterable[tuple[str, str, int]],
    waiting: Mapping[str, int],
) -> ReleasePlan:
    """``finished``: parents that just reached a final status; ``edges``: their
    ``(child, parent, on_failure)`` rows; ``waiting``: the children still ``waiting``,
    with their ``parents_left`` (the others were cancelled or released before)."""
    gone: dict[str, int] = {}
    errors: dict[str, str] = {}
    for child, parent, on_failure in sorted(edges):
        if child not in waiting:
            continue
        st = finished[parent]
        if is_bad(st) and not on_failure:
            errors.setdefault(child, parent_failed(parent, st))
        gone[child] = gone.get(child, 0) + 1
    plan = ReleasePlan(sorted(errors.items()), [], [])
    for child, n in sorted(gone.items()):
        if child in errors:
            continue
        left = waiting[child] - n
        if left > 0:
            plan.count_down.append((child, left))
        else:
            plan.release.append(child)
    return plan


def _chunks(items: Sequence[Any], n: int = ROWS_PER_INSERT) -> Iterable[Sequence[Any]]:
    for k in range(0, len(items), n):
        yield items[k : k + n]


async def insert_with_parents(
    db: Executor,
    dq: DepsQueries,
    jobs: Sequence[NewJob],
    edges: Sequence[Edge],
    now: int,
    tq: TagQueries | None = None,
) -> dict[str, JobStatus]:
    """Insert ``jobs`` (ordered parents first) and their ``edges`` in one transaction: all
    rows or none. Returns each job's starting status."""
    new_ids = {j.id for j in jobs}
    outside = sorted({e.parent for e in edges} - new_ids)
    parents_in_batch = {e.parent for e in edges} & new_ids

    async def go(tx: DriverConn) -> dict[str, JobStatus]:
        known: dict[str, JobStatus] = {}
        if outside:
            # Flagged and locked first: a parent finishing meanwhile either committed
            # before (its state is read here) or waits for this commit (and then sees
            # the flag and the deps rows).
            await tx.execute(*dq.flag_parents(outside))
            for r in await tx.fetch(*dq.parent_states(outside)):
                known[r[0]] = JobStatus(r[1])
        states, live = plan_new(jobs, edges, known)
        rows = []
        for j in jobs:
            s = states[j.id]
            final = s.status is JobStatus.CANCELLED
            rows.append(
                (
                    *j[:9],
                    s.status.value,
                    0,
                    0,
                    now,
                    s.parents_left,
                    int(j.id in parents_in_batch),
                    s.error,
                    now if final else None,
                )
            )
        for chunk in _chunks(rows):
            await tx.execute(*dq.insert(chunk))
        edge_rows = [(e.parent, e.child, int(e.run_on_failure)) for e in live]
        for chunk in _chunks(edge_rows, 2000):
            await tx.execute(*dq.insert_edges(chunk))
        if tq is not None and any(j.tags for j in jobs):
            await tag_in(tx, tq, jobs)  # in this transaction too
        return {i: s.status for i, s in states.items()}

    try:
        return await db.run("enqueueing jobs with parents", lambda: db.transaction(go))
    except StoreError as exc:
        # As for a plain insert: a lost reply to the COMMIT may hide a committed write.
        if exc.__cause__ is None:
            raise
        raise insert_failure(exc.__cause__, jobs[0].id, len(jobs)) from exc.__cause__


async def release(
    tx: DriverConn, dq: DepsQueries, frontier: dict[str, JobStatus], now: int
) -> list[JobRecord]:
    """In ``tx``: the waiting children of jobs that just reached a final status
    (``frontier``) counted down, released (returned, to dispatch) or cancelled."""
    released: list[JobRecord] = []
    while frontier:
        rows = await tx.fetch(*dq.waiting_children(sorted(frontier)))
        if not rows:
            break
        edges = [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
        children = {str(r[0]): record(r[3:]) for r in rows}
        waiting = {c: rec.parents_left for c, rec in children.items()}
        plan = plan_release(frontier, edges, waiting)
        if plan.cancel:
            await tx.execute(*dq.cancel_waiting(plan.cancel, now))
        if plan.count_down:
            await tx.execute(*dq.count_down(plan.count_down))
        if plan.release:
            await tx.execute(*dq.release(plan.release, now))
            released += _released(children, plan.release, now)
        # a cancelled child's own children are cancelled in turn
        frontier = {c: JobStatus.CANCELLED for c, _ in plan.cancel}
    return released


def _released(children: Mapping[str, JobRecord], ids: Iterable[str], now: int) -> list[JobRecord]:
    """The records of the waiting ``children`` named by ``ids`` as released at ``now``."""
    return [
        replace(
            children[c],
            status=JobStatus.TODO,
            parents_left=0,
            updated_at=now,
            run_at=max(children[c].run_at, now),
        )
        for c in ids
    ]


async def finish_parents(
    db: Executor,
    dq: DepsQueries,
    sql: BaseQueries,
    status: JobStatus,
    group: Sequence[Finish],
    now: int,
    *,
    partly_finished: bool = False,
) -> tuple[set[str], set[str], list[JobRecord]]:
    """Record the final finish of jobs flagged as parents, and release or cancel their
    children, in one transaction. Returns the ids this transaction finished, the ids
    among ``group`` that a finish at ``now`` had written before (the same outcome sent
    again after a lost reply), and the children now ``todo`` (to dispatch).
    ``partly_finished``: some jobs of ``group`` were finished already (not parents)."""
    ids = [f.id for f in group]
    tokens = [(f.id, f.token) for f in group]

    async def at_once(tx: DriverConn) -> tuple[set[str], set[str], list[JobRecord]]:
        """The usual case: every job of the group is still running under its token."""
        changed = await tx.execute(*sql.finish(status, group, now, parents=True))
        if changed != len(group):
            raise _Redo  # rolled back: which rows changed is read in the careful way
        return set(ids), set(), await release(tx, dq, dict.fromkeys(ids, status), now)

    async def locked_first(tx: DriverConn) -> tuple[set[str], set[str], list[JobRecord]]:
        """MySQL, a ``done`` group: the waiting children read and locked first, then one
        UPDATE finishes the group and counts them down (one statement fewer than
        :func:`at_once`'s finish, read and count down)."""
        rows = await tx.fetch(*dq.waiting_children(ids))
        children = {str(r[0]): record(r[3:]) for r in rows}
        edges = [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
        waiting = {c: rec.parents_left for c, rec in children.items()}
        plan = plan_release(dict.fromkeys(ids, status), edges, waiting)
        stmt = dq.finish_settling(
            [(f.id, f.token, f.result) for f in group], now, plan.count_down, plan.release
        )
        changed = await tx.execute(*stmt)
        if changed != len(group) + len(plan.count_down) + len(plan.release):
            raise _Redo  # rolled back: which rows changed is read in the careful way
        return set(ids), set(), _released(children, plan.release, now)

    async def careful(tx: DriverConn) -> tuple[set[str], set[str], list[JobRecord]]:
        mine = {r[0] for r in await tx.fetch(*dq.lock_finishing(ids, tokens))}
        before: set[str] = set()
        if len(mine) < len(ids):
            rest = [i for i in ids if i not in mine]
            before = {r[0] for r in await tx.fetch(*sql.finished(rest, status, now))}
        if not mine:
            return mine, before, []
        # on the rows locked above, flagged or not (a hint may be wrong)
        await tx.execute(*sql.finish(status, [f for f in group if f.id in mine], now, parents=None))
        return mine, before, await release(tx, dq, dict.fromkeys(mine, status), now)

    if status is JobStatus.DONE and dq.finish_in_one:
        return await _finish_in_one(db, dq, sql, group, now)
    if status is JobStatus.DONE and dq.finish_by_returning:
        return await _finish_returning(db, dq, sql, group, now)
    if not partly_finished:
        first = locked_first if status is JobStatus.DONE and dq.for_update else at_once
        try:
            return await db.run("recording finished parents", lambda: db.transaction(first))
        except _Redo:
            pass
    return await db.run("recording finished parents", lambda: db.transaction(careful))


async def settle_finals(
    db: Executor, dq: DepsQueries, what: str, stmt: Statement, ids: Sequence[str], now: int
) -> int:
    """Run ``stmt`` (a compare-and-set that may make some of ``ids`` final: a cancel, a
    reclaim that fails a job, an expiry) in a transaction with the release of the
    children of those it made final. Returns its row count. Their released children are
    left to the sweeper (not marked dispatched): these paths are rare."""
    ids = sorted(set(ids))

    async def go(tx: DriverConn) -> int:
        before = {
            r[0]: (JobStatus(r[1]), int(r[2])) for r in await tx.fetch(*dq.states(ids, lock=True))
        }
        n = await tx.execute(*stmt)
        parents = [i for i, (st, flagged) in before.items() if flagged and not st.is_final]
        if n and parents:
            after = await tx.fetch(*dq.states(parents, lock=False))
            ended = {r[0]: JobStatus(r[1]) for r in after if JobStatus(r[1]).is_final}
            if ended:
                await release(tx, dq, ended, now)
        return n

    return await db.run(what, lambda: db.transaction(go))


async def _finish_in_one(
    db: Executor, dq: DepsQueries, sql: BaseQueries, group: Sequence[Finish], now: int
) -> tuple[set[str], set[str], list[JobRecord]]:
    """``finish_parents`` of a ``done`` group in one statement (PostgreSQL), atomic on
    its own: it finishes the jobs still running under their token, counts down only
    their children and releases those reaching zero (returned). The jobs it did not
    finish are then read: those a finish at ``now`` had written before (a lost reply)."""
    stmt = dq.finish_counting_down(sql.finish(JobStatus.DONE, group, now, parents=None), now)
    rows = await _fetch(db, "recording finished parents", *stmt)
    mine = {str(i) for i in (rows[0][0] or ())}
    released = [record(r[1:]) for r in rows if r[1] is not None]
    return mine, await _written_before(db, sql, group, mine, now), released


async def _finish_returning(
    db: Executor, dq: DepsQueries, sql: BaseQueries, group: Sequence[Finish], now: int
) -> tuple[set[str], set[str], list[JobRecord]]:
    """``finish_parents`` of a ``done`` group in one ``UPDATE ... RETURNING`` (SQLite),
    atomic on its own as :func:`_finish_in_one`'s statement is."""
    stmt = dq.finish_returning([(f.id, f.token, f.result) for f in group], now)
    rows = await db.run("recording finished parents", lambda: db.fetch_write(*stmt))
    changed = [record(r) for r in rows]
    ids = {f.id for f in group}
    mine = {r.id for r in changed if r.id in ids and r.status is JobStatus.DONE}
    released = [r for r in changed if r.id not in ids and r.status is JobStatus.TODO]
    return mine, await _written_before(db, sql, group, mine, now), released


async def _written_before(
    db: Executor, sql: BaseQueries, group: Sequence[Finish], mine: set[str], now: int
) -> set[str]:
    """The jobs of ``group`` not finished now (not in ``mine``) that a finish at ``now``
    had written before (the same outcome sent again after a lost reply)."""
    rest = [f.id for f in group if f.id not in mine]
    if not rest:
        return set()
    rows = await _fetch(db, "reading finished jobs", *sql.finished(rest, JobStatus.DONE, now))
    return {r[0] for r in rows}


class _Redo(Exception):
    """A finish that did not apply to every job of its group: rolled back, to be made
    again after reading which jobs it applies to."""


async def parent_results(
    db: Executor, dq: DepsQueries, child: str
) -> list[tuple[str, JobStatus, str | None]]:
    """The id, status and stored result of each parent of ``child``, in id order."""
    rows = await _fetch(db, "reading the results of parents", *dq.results(child))
    return [(str(r[0]), JobStatus(r[1]), r[2]) for r in rows]


async def _fetch(db: Executor, what: str, sql: str, params: list[Any]) -> list[Sequence[Any]]:
    return await db.run(what, lambda: db.fetch(sql, params))
