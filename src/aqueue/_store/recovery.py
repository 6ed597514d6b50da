"""Named SQL queries of the recovery side: reclaiming expired leases, sweeping rows that
never reached Redis, repushing jobs. Every write is a compare-and-set on the state read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._models import JobRecord, JobStatus
from .claims import claim_states
from .store import _JOB_COLUMNS, Store, _record


@dataclass(frozen=True, slots=True)
class Reclaim:
    """The decision for one expired lease: where the job goes, and why."""

    id: str
    token: str
    status: JobStatus
    error: str | None


async def expired_leases(store: Store, queue: str, before: int, limit: int) -> list[JobRecord]:
    """``running`` jobs of ``queue`` whose lease ended before ``before`` (oldest first)."""
    p = store._ph
    rows = await store._run(
        "reading expired leases",
        lambda: store._fetch(
            f"SELECT {_JOB_COLUMNS} FROM {store._t} WHERE status = 'running' AND "
            f"leased_until < {p} AND queue = {p} ORDER BY leased_until LIMIT {int(limit)}",
            (before, queue),
        ),
    )
    return [_record(r) for r in rows]


async def reclaim(store: Store, items: Sequence[Reclaim], before: int, now: int) -> set[str]:
    """Apply reclaim decisions, fenced by the token that was read and by the lease still
    being expired. The stall is counted; the attempt the dead run used is given back.
    Returns the ids changed."""
    done: set[str] = set()
    groups: dict[JobStatus, list[Reclaim]] = {}
    for it in items:
        groups.setdefault(it.status, []).append(it)
    for status, group in groups.items():
        group = sorted(group, key=lambda r: r.id)
        p = store._ph
        params: list[Any] = [status.value, now]
        sets = [
            f"status = {p}",
            f"updated_at = {p}",
            "stalls = stalls + 1",
            "lease_owner = NULL",
            "lease_token = NULL",
            "leased_until = NULL",
        ]
        if status is JobStatus.TODO:
            sets.append("attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END")
            sets.append("dispatched_at = NULL")  # until the suspect message is pushed
            sets.append(f"run_at = {p}")
            params.append(now)
        else:
            sets.append(f"finished_at = {p}, unique_key = NULL")
            params.append(now)
            sets.append(store._set_value("error", [(r.id, r.error) for r in group], params))
        ids = [r.id for r in group]
        params.extend(ids)
        where = f"id IN ({store._in(len(ids))}) AND status = 'running' AND leased_until < {p} AND "
        params.append(before)
        where += store._tokens_match([(r.id, r.token) for r in group], params)
        sql = f"UPDATE {store._t} SET {', '.join(sets)} WHERE {where}"
        count = await store._run("reclaiming jobs", _bind(store, sql, params))
        if count == len(group):
            done |= set(ids)
            continue
        states = await claim_states(store, ids)
        done |= {i for i in ids if (st := states.get(i)) and st.status is status}
    return done


async def owner_running(store: Store, queue: str, owner: str) -> int:
    """How many jobs of ``queue`` run under ``owner`` (a runner serves one queue)."""
    p = store._ph
    rows = await store._run(
        "counting a runner's jobs",
        lambda: store._fetch(
            f"SELECT COUNT(*) FROM {store._t} WHERE queue = {p} AND status = 'running' "
            f"AND lease_owner = {p}",
            (queue, owner),
        ),
    )
    return int(rows[0][0])


async def undispatched(
    store: Store, queue: str, epoch: str, written_before: int, after_id: str, limit: int
) -> list[JobRecord]:
    """Keyset page of ``todo`` jobs that this Redis (epoch) may not hold: not marked
    dispatched since their last write (enqueue, retry, reclaim, repush) and that write
    older than the grace period, or dispatched under another epoch. The grace runs from
    the last write, not from creation: a job reclaimed or retried a moment ago is being
    pushed by whoever wrote it, and a second copy would lose its place (a reclaimed job's
    copy in a ready list could run beside other jobs instead of in its suspect lane)."""
    p = store._ph
    rows = await store._run(
        "sweeping",
        lambda: store._fetch(
            f"SELECT {_JOB_COLUMNS} FROM {store._t} WHERE queue = {p} AND status = 'todo' "
            f"AND id > {p} AND ((dispatched_at IS NULL AND updated_at < {p}) OR "
            f"(dispatched_at IS NOT NULL AND (dispatch_epoch IS NULL OR dispatch_epoch <> {p}))) "
            f"ORDER BY id LIMIT {int(limit)}",
            (queue, after_id, written_before, epoch),
        ),
    )
    return [_record(r) for r in rows]


async def repush(store: Store, job_id: str, now: int, *, force: bool) -> JobRecord | None:
    """Force a job back to ``todo`` with fresh attempts. A ``running`` job is changed only
    with ``force``: its token is revoked and it may start again only when the old lease
    would have ended, by which time its runner has noticed and cancelled the handler.
    Returns the job as it now stands (``None`` when there is no such job)."""
    p = store._ph
    base = (
        f"status = 'todo', attempts = 0, stalls = 0, lease_owner = NULL, lease_token = NULL, "
        f"dispatched_at = NULL, "
        f"leased_until = NULL, finished_at = NULL, result = NULL, error = NULL, "
        f"updated_at = {p}"
    )
    sql = f"UPDATE {store._t} SET {base}, run_at = {p} WHERE id = {p} AND status <> 'running'"
    changed = await store._run("repushing a job", lambda: store._exec(sql, (now, now, job_id)))
    if not changed and force:
        # run_at first: MySQL evaluates SET assignments left to right.
        sql = (
            f"UPDATE {store._t} SET run_at = COALESCE(leased_until, {p}), {base} "
            f"WHERE id = {p} AND status = 'running'"
        )
        await store._run("repushing a running job", lambda: store._exec(sql, (now, now, job_id)))
    return await store.get_job(job_id)


async def cancel(store: Store, job_id: str, reason: str, now: int) -> bool:
    """``todo``/``running`` -> ``cancelled`` (final). A running job's token is revoked:
    its runner cancels the handler at its next lease renewal, and its finish is refused."""
    p = store._ph
    # A delayed job cancelled before it was due: run_at becomes the cancel time, as a
    # finished job's run_at is never after its finished_at (the purge relies on it).
    sql = (
        f"UPDATE {store._t} SET status = 'cancelled', error = {p}, finished_at = {p}, "
        f"run_at = {store.earlier('run_at')}, updated_at = {p}, lease_token = NULL, "
        f"leased_until = NULL, unique_key = NULL WHERE id = {p} AND status IN ('todo', 'running')"
    )
    params = (reason, now, now, now, now, job_id)
    return await store._run("cancelling a job", lambda: store._exec(sql, params)) > 0


async def purge_finished(store: Store, queue: str, before: int, limit: int = 5000) -> int:
    """Delete finished jobs (done/failed/cancelled) of ``queue`` that finished before
    ``before``, in pages. Returns how many were deleted.

    No index holds ``finished_at`` (every finish would move it): a finished job's
    ``run_at`` is never after its ``finished_at`` (it ran when due, or was cancelled with
    ``run_at`` brought forward), so ``run_at < before`` bounds the index range to read
    without missing any, and ``finished_at`` is checked on those rows only."""
    p = store._ph
    total = 0
    while True:
        rows = await store._run(
            "listing finished jobs",
            lambda: store._fetch(
                f"SELECT id FROM {store._t} WHERE queue = {p} AND "
                f"status IN ('done', 'failed', 'cancelled') AND run_at < {p} "
                f"AND finished_at < {p} LIMIT {int(limit)}",
                (queue, before, before),
            ),
        )
        if not rows:
            return total
        ids = sorted(r[0] for r in rows)
        sql = (
            f"DELETE FROM {store._t} WHERE id IN ({store._in(len(ids))}) "
            "AND status IN ('done', 'failed', 'cancelled')"
        )
        total += await store._run("purging finished jobs", _bind(store, sql, ids))
        if len(rows) < limit:
            return total


async def ids_by_status(store: Store, queue: str, status: JobStatus, limit: int) -> list[str]:
    p = store._ph
    rows = await store._run(
        "listing jobs",
        lambda: store._fetch(
            f"SELECT id FROM {store._t} WHERE queue = {p} AND status = {p} ORDER BY id "
            f"LIMIT {int(limit)}",
            (queue, status.value),
        ),
    )
    return [r[0] for r in rows]


def _bind(store: Store, sql: str, params: Sequence[Any]) -> Callable[[], Awaitable[int]]:
    async def go() -> int:
        return await store._exec(sql, params)

    return go
