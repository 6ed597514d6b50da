"""Named SQL queries of the claim: a runner takes the jobs it moved out of Redis.

A claim is a compare-and-set from ``todo`` to ``running`` under a fresh lease token. The
batch form is one autocommit statement. The open form (:func:`claim_open`, MySQL only)
runs the same statement inside a transaction (on a connection with autocommit off: the
statement opens it, no BEGIN round trip) and hands back its commit: the statement's
row locks already keep every other writer off the claimed jobs, so the runner starts them
while the commit's log flush is under way, instead of after it (the flush is most of an
idle runner's enqueue-to-start latency). A job is never recorded before its claim is
durable; if the commit fails, the claim is taken again under the same token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._models import JobStatus
from .store import Store

Commit = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClaimState:
    """What SQL says of a job whose claim was lost."""

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


def fences(items: Sequence[tuple[str, int, int]]) -> dict[str, tuple[int, int]]:
    """The ``(stalls, attempts)`` each job's claim is fenced by. Two copies of one job in
    a batch: the later one (as SQL moves them, both only grow, until a repush); the copy
    that matches SQL is never dropped when the claim loses (``decide_claim_loss``)."""
    out: dict[str, tuple[int, int]] = {}
    for job_id, stalls, attempts in items:
        prev = out.get(job_id)
        out[job_id] = (stalls, attempts) if prev is None else max(prev, (stalls, attempts))
    return out


def _claim_sql(store: Store, c: Claim) -> tuple[str, list[Any], list[str]]:
    p = store._ph
    fenced = fences(c.items)
    ordered = sorted(fenced)
    params: list[Any] = [c.owner, c.token, c.leased_until, c.now, c.now, *ordered, c.now]
    where = f"id IN ({store._in(len(ordered))}) AND status = 'todo' AND run_at <= {p}"
    for col, k in (("stalls", 0), ("attempts", 1)):
        values = {v[k] for v in fenced.values()}
        if len(values) == 1:  # the usual case: one literal, no CASE
            where += f" AND {col} = {int(values.pop())}"
        else:
            where += f" AND {col} = " + store._case([(i, fenced[i][k]) for i in ordered], params)
    sql = (
        f"UPDATE {store._t} SET status = 'running', lease_owner = {p}, lease_token = {p}, "
        f"leased_until = {p}, attempts = attempts + 1, updated_at = {p}, "
        f"dispatched_at = COALESCE(dispatched_at, {p}) WHERE {where}"
    )
    return sql, params, ordered


def _won_sql(store: Store, n: int) -> str:
    return f"SELECT id FROM {store._t} WHERE id IN ({store._in(n)}) AND lease_token = {store._ph}"


async def claim(store: Store, c: Claim, *, again: bool = False) -> set[str]:
    """Claim the jobs that are ``todo``, due, and have the stall and attempt counts their
    message carries: a stale copy cannot claim (one made before a reclaim, a retry or a
    repush; the copy made by whoever wrote the job last carries SQL's counts); returns
    the ids won. ``again``: the token was used
    before (a claim whose commit failed, taken again): jobs held under it count as won."""
    if not c.items:
        return set()
    sql, params, ordered = _claim_sql(store, c)
    count = await store._run("claiming jobs", lambda: store._exec(sql, params))
    if count == len(ordered):
        return set(ordered)
    if count == 0 and not again:
        return set()
    rows = await store._run(
        "reading claimed jobs",
        lambda: store._fetch(_won_sql(store, len(ordered)), [*ordered, c.token]),
    )
    return {r[0] for r in rows}


async def claim_again(store: Store, c: Claim) -> tuple[set[str], set[str]]:
    """Take a claim again whose commit failed (rolled back, or its outcome unknown), under
    the same token: returns ``(held, retaken)``, the ids whose first claim had committed
    after all (SQL holds them under this token) and the ids claimed now. An id in neither
    was claimed elsewhere meanwhile (or can no longer run)."""
    if not c.items:
        return set(), set()
    ids = sorted({i for i, _, _ in c.items})
    rows = await store._run(
        "reading claimed jobs",
        lambda: store._fetch(
            f"SELECT id FROM {store._t} WHERE id IN ({store._in(len(ids))}) "
            f"AND lease_token = {store._ph} AND status = 'running'",
            [*ids, c.token],
        ),
    )
    held = {r[0] for r in rows}
    rest = [item for item in c.items if item[0] not in held]
    if not rest:
        return held, set()
    retaken = await claim(store, Claim(rest, c.owner, c.token, c.leased_until, c.now), again=True)
    return held, retaken


async def claim_open(store: Store, c: Claim) -> tuple[set[str], Commit | None]:
    """:func:`claim` with its commit left to the caller: returns the ids won and the
    commit to await before anything is recorded for them (None: nothing to commit). On
    SQLite, whose writer lock would be held meanwhile, the claim is committed at once."""
    if store.is_sqlite or not c.items:
        return await claim(store, c), None
    sql, params, ordered = _claim_sql(store, c)
    return await store._run("claiming jobs", lambda: _open(store, sql, params, ordered, c.token))


async def _open(
    store: Store, sql: str, params: list[Any], ordered: list[str], token: str
) -> tuple[set[str], Commit | None]:
    conns = store.claim_conns  # autocommit off: the UPDATE opens the transaction
    held = await conns.take()
    raw: Any = held.raw
    try:
        async with raw.cursor() as cur:
            await cur.execute(sql, tuple(params))
            count = int(cur.rowcount)
            if count == len(ordered):
                won = set(ordered)
            elif count == 0:
                won = set()
            else:
                await cur.execute(_won_sql(store, len(ordered)), (*ordered, token))
                won = {r[0] for r in await cur.fetchall()}
        if not won:
            await raw.commit()  # nothing changed: no log flush to wait for
    except BaseException:
        await conns.discard(held)  # the server rolls the transaction back
        raise
    if not won:
        await conns.give(held)
        return won, None

    async def commit() -> None:
        try:
            await store._run("committing claims", raw.commit, attempts=1)
        except BaseException:
            await conns.discard(held)
            raise
        await conns.give(held)

    return won, commit


async def claim_states(store: Store, ids: Sequence[str]) -> dict[str, ClaimState]:
    """What SQL says about jobs whose claim was lost (missing ids: no such job)."""
    if not ids:
        return {}
    rows = await store._run(
        "reading job states",
        lambda: store._fetch(
            f"SELECT id, status, run_at, leased_until, stalls, attempts FROM {store._t} "
            f"WHERE id IN ({store._in(len(ids))})",
            list(ids),
        ),
    )
    return {r[0]: ClaimState(JobStatus(r[1]), int(r[2]), r[3], int(r[4]), int(r[5])) for r in rows}


async def release_claims(store: Store, items: Sequence[tuple[str, str]], now: int) -> int:
    """Give back claimed jobs that did not start, by ``(id, token)``: ``todo`` again,
    attempt not used up, no stall counted. A claim revoked meanwhile is left alone."""
    if not items:
        return 0
    p = store._ph
    params: list[Any] = [now]
    ids = sorted(i for i, _ in items)
    params.extend(ids)
    where = f"id IN ({store._in(len(ids))}) AND status = 'running' AND "
    where += store._tokens_match(sorted(items), params)
    sql = (
        f"UPDATE {store._t} SET status = 'todo', attempts = attempts - 1, "
        f"lease_owner = NULL, lease_token = NULL, leased_until = NULL, updated_at = {p} "
        f"WHERE {where}"
    )
    return await store._run("releasing claims", lambda: store._exec(sql, params))
