"""The shared statements of claims, recovery and job control (pure builders, as in
``base``).

A claim is a compare-and-set from ``todo`` to ``running`` under a fresh lease token. The
batch form is one autocommit statement. The open form (MySQL, PostgreSQL) runs the same
statement inside a transaction (MySQL: on a connection with autocommit off, the statement
opens it, no BEGIN round trip) and hands back its commit: the statement's row locks already
keep every other writer off the claimed jobs, so the runner starts them while the
commit's log flush is under way, instead of after it (the flush is most of an idle
runner's enqueue-to-start latency). A job is never recorded before its claim is durable;
if the commit fails, the claim is taken again under the same token.

Every write of the recovery side is a compare-and-set on the state read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import JobStatus
from ..values import Claim, Reclaim, fences
from .admin import AdminQueries
from .base import _PUT_BACK, JOB_COLUMNS, Statement


class Queries(AdminQueries):
    """Every statement the SQL dialects share."""

    # -- claims -----------------------------------------------------------------------

    def claim(self, c: Claim) -> tuple[str, list[Any], list[str]]:
        """The claim of ``c``'s jobs, and their ids in the order it names them."""
        b = self.bind
        fenced = fences(c.items)
        ordered = sorted(fenced)
        params: list[Any] = []
        sets = (
            f"status = 'running', lease_owner = {b(params, c.owner)}, "
            f"lease_token = {b(params, c.token)}, leased_until = {b(params, c.leased_until)}, "
            f"attempts = attempts + 1, updated_at = {b(params, c.now)}, "
            f"dispatched_at = COALESCE(dispatched_at, {b(params, c.now)})"
        )
        where = (
            f"{self.ids_in(params, ordered)} AND status = 'todo' AND run_at <= {b(params, c.now)}"
        )
        for col, k in (("stalls", 0), ("attempts", 1)):
            values = {v[k] for v in fenced.values()}
            if len(values) == 1:  # the usual case: one literal, no CASE
                where += f" AND {col} = {int(values.pop())}"
            else:
                where += f" AND {col} = " + self.case([(i, fenced[i][k]) for i in ordered], params)
        return f"UPDATE {self.t} SET {sets} WHERE {where}", params, ordered

    def won(self, ids: Sequence[str], token: str) -> Statement:
        """The ids among ``ids`` held under ``token``."""
        params: list[Any] = []
        sql = (
            f"SELECT id FROM {self.t} WHERE {self.ids_in(params, ids)} "
            f"AND lease_token = {self.bind(params, token)}"
        )
        return sql, params

    def running_under(self, ids: Sequence[str], token: str) -> Statement:
        """The ids among ``ids`` ``running`` under ``token``."""
        params: list[Any] = []
        sql = (
            f"SELECT id FROM {self.t} WHERE {self.ids_in(params, ids)} "
            f"AND lease_token = {self.bind(params, token)} AND status = 'running'"
        )
        return sql, params

    def claim_states(self, ids: Sequence[str]) -> Statement:
        params: list[Any] = []
        sql = (
            f"SELECT id, status, run_at, leased_until, stalls, attempts FROM {self.t} "
            f"WHERE {self.ids_in(params, ids)}"
        )
        return sql, params

    def release_claims(self, items: Sequence[tuple[str, str]], now: int) -> Statement:
        """Give back claimed jobs that did not start, ``items`` sorted."""
        params: list[Any] = []
        sets = f"status = 'todo', attempts = attempts - 1, {_PUT_BACK}, "
        sets += f"updated_at = {self.bind(params, now)}"
        where = f"{self.ids_in(params, [i for i, _ in items])} AND status = 'running' AND "
        where += self.tokens_match(items, params)
        return f"UPDATE {self.t} SET {sets} WHERE {where}", params

    # -- recovery -----------------------------------------------------------------------

    def expired_leases(self, queue: str, before: int, limit: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT {JOB_COLUMNS} FROM {self.t} WHERE status = 'running' AND "
            f"leased_until < {b(params, before)} AND queue = {b(params, queue)} "
            f"ORDER BY leased_until LIMIT {int(limit)}"
        )
        return sql, params

    def reclaim(
        self, status: JobStatus, group: Sequence[Reclaim], before: int, now: int
    ) -> Statement:
        """Apply reclaim decisions of one status, ``group`` sorted by id. The stall is
        counted; the attempt the dead run used is given back."""
        b = self.bind
        params: list[Any] = []
        sets = [
            f"status = {b(params, status.value)}",
            f"updated_at = {b(params, now)}",
            "stalls = stalls + 1",
            "lease_owner = NULL",
            "lease_token = NULL",
            "leased_until = NULL",
        ]
        if status is JobStatus.TODO:
            sets.append("attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END")
            sets.append("dispatched_at = NULL")  # until the suspect message is pushed
            sets.append(f"run_at = {b(params, now)}")
        else:
            sets.append(f"finished_at = {b(params, now)}, unique_key = NULL")
            sets.append(self.set_value("error", [(r.id, r.error) for r in group], params))
        sets_sql = ", ".join(sets)
        where = (
            f"{self.ids_in(params, [r.id for r in group])} AND status = 'running' "
            f"AND leased_until < {b(params, before)} AND "
        )
        where += self.tokens_match([(r.id, r.token) for r in group], params)
        return f"UPDATE {self.t} SET {sets_sql} WHERE {where}", params

    def owner_running(self, queue: str, owner: str) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT COUNT(*) FROM {self.t} WHERE queue = {b(params, queue)} "
            f"AND status = 'running' AND lease_owner = {b(params, owner)}"
        )
        return sql, params

    def undispatched(
        self, queue: str, epoch: str, written_before: int, after_id: str, limit: int
    ) -> Statement:
        """Keyset page of ``todo`` jobs that this Redis (epoch) may not hold: not marked
        dispatched since their last write (enqueue, retry, reclaim, repush) and that write
        older than the grace period, or dispatched under another epoch. The grace runs
        from the last write, not from creation: a job reclaimed or retried a moment ago is
        being pushed by whoever wrote it, and a second copy would lose its place (a
        reclaimed job's copy in a ready list could run beside other jobs instead of in its
        suspect lane)."""
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT {JOB_COLUMNS} FROM {self.t} WHERE queue = {b(params, queue)} "
            f"AND status = 'todo' AND id > {b(params, after_id)} AND "
            f"((dispatched_at IS NULL AND updated_at < {b(params, written_before)}) OR "
            "(dispatched_at IS NOT NULL AND "
            f"(dispatch_epoch IS NULL OR dispatch_epoch <> {b(params, epoch)}))) "
            f"ORDER BY id LIMIT {int(limit)}"
        )
        return sql, params

    # -- job control ----------------------------------------------------------------

    def _repushed(self, params: list[Any], now: int) -> str:
        return (
            "status = 'todo', attempts = 0, stalls = 0, lease_owner = NULL, lease_token = NULL, "
            "dispatched_at = NULL, "
            "leased_until = NULL, finished_at = NULL, result = NULL, error = NULL, "
            f"updated_at = {self.bind(params, now)}"
        )

    def repush(self, job_id: str, now: int) -> Statement:
        """A job that is not ``running`` back to ``todo`` with fresh attempts."""
        b = self.bind
        params: list[Any] = []
        sets = self._repushed(params, now)
        sql = (
            f"UPDATE {self.t} SET {sets}, run_at = {b(params, now)} "
            f"WHERE id = {b(params, job_id)} AND status <> 'running'"
        )
        return sql, params

    def repush_running(self, job_id: str, now: int) -> Statement:
        """A ``running`` job back to ``todo``, due when its old lease would have ended."""
        b = self.bind
        params: list[Any] = []
        # run_at first: MySQL evaluates SET assignments left to right.
        run_at = f"run_at = COALESCE(leased_until, {b(params, now)})"
        sql = (
            f"UPDATE {self.t} SET {run_at}, {self._repushed(params, now)} "
            f"WHERE id = {b(params, job_id)} AND status = 'running'"
        )
        return sql, params

    def cancel(self, job_id: str, reason: str, now: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        # A delayed job cancelled before it was due: run_at becomes the cancel time, as a
        # finished job's run_at is never after its finished_at (the purge relies on it).
        sql = (
            f"UPDATE {self.t} SET status = 'cancelled', error = {b(params, reason)}, "
            f"finished_at = {b(params, now)}, run_at = {self.earlier('run_at', params, now)}, "
            f"updated_at = {b(params, now)}, lease_token = NULL, "
            "leased_until = NULL, unique_key = NULL "
            f"WHERE id = {b(params, job_id)} AND status IN ('waiting', 'todo', 'running')"
        )
        return sql, params

    def finished_page(self, queue: str, before: int, limit: int) -> Statement:
        """Up to ``limit`` ids of jobs of ``queue`` that finished before ``before``.

        No index holds ``finished_at`` (every finish would move it): a finished job's
        ``run_at`` is never after its ``finished_at`` (it ran when due, or was cancelled
        with ``run_at`` brought forward), so ``run_at < before`` bounds the index range to
        read without missing any, and ``finished_at`` is checked on those rows only."""
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT id FROM {self.t} WHERE queue = {b(params, queue)} AND "
            f"status IN ('done', 'failed', 'cancelled') AND run_at < {b(params, before)} "
            f"AND finished_at < {b(params, before)} LIMIT {int(limit)}"
        )
        return sql, params

    def delete_finished(self, ids: Sequence[str]) -> Statement:
        params: list[Any] = []
        sql = (
            f"DELETE FROM {self.t} WHERE {self.ids_in(params, ids)} "
            "AND status IN ('done', 'failed', 'cancelled')"
        )
        return sql, params
