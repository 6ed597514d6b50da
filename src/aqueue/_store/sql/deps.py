"""The statements of dependencies (``<table>_deps``), as pure builders over a dialect's
:class:`~.base.BaseQueries` (its placeholders and id lists).

A job enqueued with parents is inserted ``waiting`` with ``parents_left`` = its parents
not finished yet, one deps row per such parent, and its parents flagged
``has_children``. A flagged job's final finish is recorded in a transaction that also
releases its children (:mod:`aqueue._store.deps`); a plain job's finish never reads the
deps table (the finish's ``has_children = 0`` condition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import JobStatus
from .base import JOB_COLUMNS, BaseQueries, Statement

_INSERT_COLUMNS = (
    "id, queue, task, payload, priority, max_attempts, run_at, created_at, unique_key, "
    "status, attempts, stalls, updated_at, parents_left, has_children, error, finished_at"
)
ROWS_PER_INSERT = 500
"""Rows per INSERT: under PostgreSQL's 32,767 parameters and SQLite's 32,766."""


class DepsQueries:
    """The deps statements over ``q``'s jobs table and the deps table ``deps`` (quoted)."""

    def __init__(
        self, q: BaseQueries, deps: str, *, row_locks: bool, lock_of: bool, returning: bool = False
    ) -> None:
        self.q = q
        self.t = q.t
        self.deps = deps
        # SQLite has no row locks: its transactions take the database's write lock
        self.for_update = " FOR UPDATE" if row_locks else ""
        # a join locks the jobs' rows only (PostgreSQL); MySQL locks every row it reads
        self.for_update_jobs = " FOR UPDATE OF j" if lock_of else self.for_update
        # PostgreSQL: a finish and its count down in one statement (data-modifying WITH)
        self.finish_in_one = lock_of
        # SQLite 3.35+: the same with UPDATE ... FROM ... RETURNING (no WITH around writes)
        self.finish_by_returning = returning and not lock_of

    def _in(self, params: list[Any], column: str, ids: Sequence[str]) -> str:
        """``column`` is one of ``ids`` (the dialect's form of an id list)."""
        return column + self.q.ids_in(params, ids).removeprefix("id")

    # -- enqueue --------------------------------------------------------------------

    def flag_parents(self, ids: Sequence[str]) -> Statement:
        """Flag (and lock, until the transaction ends) the parents named by new jobs."""
        params: list[Any] = []
        sql = f"UPDATE {self.t} SET has_children = 1 WHERE {self.q.ids_in(params, ids)}"
        return sql, params

    def parent_states(self, ids: Sequence[str]) -> Statement:
        params: list[Any] = []
        sql = f"SELECT id, status, error FROM {self.t} WHERE {self.q.ids_in(params, ids)}"
        return sql, params

    def insert(self, rows: Sequence[Sequence[Any]]) -> Statement:
        """Insert jobs with their status, ``parents_left``, ``has_children``, ``error``
        and ``finished_at`` (rows in :data:`_INSERT_COLUMNS` order)."""
        params: list[Any] = []
        values = ", ".join(f"({self.q.bind_all(params, r)})" for r in rows)
        return f"INSERT INTO {self.t} ({_INSERT_COLUMNS}) VALUES {values}", params

    def insert_edges(self, edges: Sequence[tuple[str, str, int]]) -> Statement:
        """``(parent_id, child_id, on_failure)`` rows."""
        params: list[Any] = []
        values = ", ".join(f"({self.q.bind_all(params, e)})" for e in edges)
        sql = f"INSERT INTO {self.deps} (parent_id, child_id, on_failure) VALUES {values}"
        return sql, params

    # -- finish and release ------------------------------------------------------------

    def lock_finishing(self, ids: Sequence[str], tokens: Sequence[tuple[str, str]]) -> Statement:
        """The jobs among ``ids`` still ``running`` under their token, locked: exactly
        those this transaction's finish changes."""
        params: list[Any] = []
        sql = (
            f"SELECT id FROM {self.t} WHERE {self.q.ids_in(params, ids)} AND status = 'running' "
            f"AND {self.q.tokens_match(tokens, params)}{self.for_update}"
        )
        return sql, params

    def states(self, ids: Sequence[str], *, lock: bool) -> Statement:
        """The status and ``has_children`` of each of ``ids`` (``lock``: locked)."""
        params: list[Any] = []
        sql = (
            f"SELECT id, status, has_children FROM {self.t} WHERE {self.q.ids_in(params, ids)}"
            f"{self.for_update if lock else ''}"
        )
        return sql, params

    def waiting_children(self, parents: Sequence[str]) -> Statement:
        """The edges from ``parents`` to ``waiting`` children, each with the child's row
        (:data:`JOB_COLUMNS`), the children locked."""
        params: list[Any] = []
        cols = ", ".join(f"j.{c.strip()}" for c in JOB_COLUMNS.split(","))
        sql = (
            f"SELECT d.child_id, d.parent_id, d.on_failure, {cols} FROM {self.deps} d "
            f"JOIN {self.t} j ON j.id = d.child_id "
            f"WHERE {self._in(params, 'd.parent_id', parents)} AND j.status = 'waiting'"
            f"{self.for_update_jobs}"
        )
        return sql, params

    def finish_counting_down(self, finish: Statement, now: int) -> Statement:
        """PostgreSQL: ``finish`` (an ``UPDATE`` of jobs finished ``done``) and, in the
        same statement, the count down of the waiting children of the jobs it changed,
        those reaching zero moved to ``todo`` (its assignments all read the row as it
        was). One row: the ids it finished (an array, or NULL), then the columns
        (:data:`JOB_COLUMNS`) of a released child, or NULLs; one row per released child."""
        sql, params = finish[0], list(finish[1])
        at = self.q.bind(params, now)
        zero = "c.parents_left <= n.n"
        cols = ", ".join(f"c.{c.strip()}" for c in JOB_COLUMNS.split(","))
        stmt = (
            f"WITH fin AS ({sql} RETURNING id), "
            f"n AS (SELECT d.child_id, COUNT(*) AS n FROM {self.deps} d "
            "JOIN fin ON d.parent_id = fin.id GROUP BY d.child_id), "
            f"down AS (UPDATE {self.t} c SET "
            f"parents_left = CASE WHEN {zero} THEN 0 ELSE c.parents_left - n.n END, "
            f"status = CASE WHEN {zero} THEN 'todo' ELSE c.status END, "
            f"updated_at = CASE WHEN {zero} THEN {at} ELSE c.updated_at END, "
            f"run_at = CASE WHEN {zero} AND c.run_at < {at} THEN {at} ELSE c.run_at END, "
            f"dispatched_at = CASE WHEN {zero} THEN NULL ELSE c.dispatched_at END "
            f"FROM n WHERE c.id = n.child_id AND c.status = 'waiting' RETURNING {cols}) "
            "SELECT (SELECT array_agg(id) FROM fin), down.* FROM (SELECT 1) AS one "
            "LEFT JOIN down ON down.status = 'todo'"
        )
        return stmt, params

    def finish_settling(
        self,
        group: Sequence[tuple[str, str, Any]],
        now: int,
        count_down: Sequence[tuple[str, int]],
        release: Sequence[str],
    ) -> Statement:
        """MySQL, in a transaction that holds the waiting children locked: one ``UPDATE``
        that finishes ``done`` the jobs of ``group`` (``(id, token, result)``, sorted by
        id; flagged as parents, still ``running`` under their token), sets the
        ``parents_left`` of the children in ``count_down`` and moves those in ``release``
        to ``todo``. MySQL assigns left to right, each assignment reading the row as the
        earlier ones left it: ``status``, which tells a finished job (``running``) from a
        child (``waiting``), is assigned last, and no column is read after its own
        assignment. Its row count is ``len(group) + len(count_down) + len(release)``
        when every job of ``group`` was still running under its token."""
        q = self.q
        params: list[Any] = []
        at = int(now)  # a literal: a positional placeholder is bound once per use
        parent = "status = 'running'"
        result = q.set_value("result", [(i, r) for i, _, r in group], params)
        left = [*count_down, *((c, 0) for c in release)]
        sets = [
            result.replace("result = ", f"result = CASE WHEN {parent} THEN ", 1)
            + " ELSE result END",
            f"finished_at = CASE WHEN {parent} THEN {at} ELSE finished_at END",
            f"leased_until = CASE WHEN {parent} THEN NULL ELSE leased_until END",
            f"unique_key = CASE WHEN {parent} THEN NULL ELSE unique_key END",
        ]
        if left:
            by_child = q.case(left, params).removesuffix(" END")
            sets.append(f"parents_left = {by_child} ELSE parents_left END")
        if release:
            freed = q.ids_in(params, release)
            sets.append(f"run_at = CASE WHEN {freed} AND run_at < {at} THEN {at} ELSE run_at END")
            freed = q.ids_in(params, release)
            sets.append(f"dispatched_at = CASE WHEN {freed} THEN NULL ELSE dispatched_at END")
            freed = q.ids_in(params, release)
            sets.append(f"updated_at = CASE WHEN {parent} OR {freed} THEN {at} ELSE updated_at END")
            freed = q.ids_in(params, release)
            sets.append(
                f"status = CASE WHEN {parent} THEN 'done' WHEN {freed} THEN 'todo' ELSE status END"
            )
        else:
            sets.append(f"updated_at = CASE WHEN {parent} THEN {at} ELSE updated_at END")
            sets.append(f"status = CASE WHEN {parent} THEN 'done' ELSE status END")
        ids = q.ids_in(params, [i for i, _, _ in group])
        tokens = q.tokens_match([(i, tok) for i, tok, _ in group], params)
        where = f"({ids} AND {parent} AND has_children = 1 AND {tokens})"
        children = [c for c, _ in left]
        if children:
            where += f" OR ({q.ids_in(params, children)} AND status = 'waiting')"
        return f"UPDATE {self.t} SET {', '.join(sets)} WHERE {where}", params

    def finish_returning(self, group: Sequence[tuple[str, str, Any]], now: int) -> Statement:
        """SQLite: one ``UPDATE ... FROM ... RETURNING`` that finishes ``done`` the jobs
        of ``group`` (``(id, token, result)``, sorted by id) still ``running`` under their
        token, and counts down their waiting children, those reaching zero moved to
        ``todo``; every assignment reads the row as it was. Returns the rows it changed
        (:data:`JOB_COLUMNS`, as written): the finished jobs ``done``, the released
        children ``todo``, the others still ``waiting``."""
        q = self.q
        params: list[Any] = []
        ids = q.ids_in(params, [i for i, _, _ in group])
        tokens = q.tokens_match([(i, tok) for i, tok, _ in group], params)
        result = q.set_value("result", [(i, r) for i, _, r in group], params)
        at = int(now)  # a literal: a positional placeholder is bound once per use
        parent, zero = "x.parent = 1", "parents_left <= x.n"
        sql = (
            f"WITH fin AS (SELECT id FROM {self.t} WHERE {ids} AND status = 'running' "
            f"AND {tokens}), "
            f"n AS (SELECT d.child_id AS xid, COUNT(*) AS n FROM {self.deps} d "
            "JOIN fin ON d.parent_id = fin.id GROUP BY d.child_id), "
            "x AS (SELECT id AS xid, 0 AS n, 1 AS parent FROM fin "
            "UNION ALL SELECT xid, n, 0 FROM n) "
            f"UPDATE {self.t} SET "
            f"{result.replace('result = ', f'result = CASE WHEN {parent} THEN ', 1)} "
            "ELSE result END, "
            f"finished_at = CASE WHEN {parent} THEN {at} ELSE finished_at END, "
            f"leased_until = CASE WHEN {parent} THEN NULL ELSE leased_until END, "
            f"unique_key = CASE WHEN {parent} THEN NULL ELSE unique_key END, "
            f"run_at = CASE WHEN NOT {parent} AND {zero} AND run_at < {at} THEN {at} "
            "ELSE run_at END, "
            f"dispatched_at = CASE WHEN NOT {parent} AND {zero} THEN NULL ELSE dispatched_at END, "
            f"updated_at = CASE WHEN {parent} OR {zero} THEN {at} ELSE updated_at END, "
            f"status = CASE WHEN {parent} THEN 'done' WHEN {zero} THEN 'todo' ELSE status END, "
            f"parents_left = CASE WHEN {parent} THEN parents_left WHEN {zero} THEN 0 "
            "ELSE parents_left - x.n END "
            f"FROM x WHERE {self.t}.id = x.xid AND (({parent} AND {self.t}.status = 'running') "
            f"OR (NOT {parent} AND {self.t}.status = 'waiting')) RETURNING {JOB_COLUMNS}"
        )
        return sql, params

    def cancel_waiting(self, reasons: Sequence[tuple[str, str]], now: int) -> Statement:
        """Cancel waiting jobs, each with its reason (a parent failed or was cancelled)."""
        b = self.q.bind
        params: list[Any] = []
        sets = (
            f"status = 'cancelled', {self.q.set_value('error', reasons, params)}, "
            f"finished_at = {b(params, now)}, updated_at = {b(params, now)}, "
            "unique_key = NULL, parents_left = 0"
        )
        ids = [i for i, _ in reasons]
        sql = (
            f"UPDATE {self.t} SET {sets} WHERE {self.q.ids_in(params, ids)} AND status = 'waiting'"
        )
        return sql, params

    def count_down(self, left: Sequence[tuple[str, int]]) -> Statement:
        """Set ``parents_left`` of waiting jobs still waiting for some parents."""
        params: list[Any] = []
        sets = self.q.set_value("parents_left", left, params)
        ids = [i for i, _ in left]
        sql = (
            f"UPDATE {self.t} SET {sets} WHERE {self.q.ids_in(params, ids)} AND status = 'waiting'"
        )
        return sql, params

    def release(self, ids: Sequence[str], now: int) -> Statement:
        """Waiting jobs whose last parent finished -> ``todo``, due no earlier than now,
        not marked dispatched (if the push after the commit is lost, the sweeper sends
        them)."""
        b = self.q.bind
        params: list[Any] = []
        sets = (
            f"status = 'todo', parents_left = 0, updated_at = {b(params, now)}, "
            f"run_at = CASE WHEN run_at < {b(params, now)} THEN {b(params, now)} ELSE run_at END, "
            "dispatched_at = NULL"
        )
        sql = (
            f"UPDATE {self.t} SET {sets} WHERE {self.q.ids_in(params, ids)} AND status = 'waiting'"
        )
        return sql, params

    def forget(self, children: Sequence[str]) -> Statement:
        """The edges of deleted jobs (a job's edges are read only while it waits or runs)."""
        params: list[Any] = []
        return f"DELETE FROM {self.deps} WHERE {self._in(params, 'child_id', children)}", params

    def forget_queue(self, queue: str) -> Statement:
        params: list[Any] = []
        sql = (
            f"DELETE FROM {self.deps} WHERE child_id IN "
            f"(SELECT id FROM {self.t} WHERE queue = {self.q.bind(params, queue)})"
        )
        return sql, params

    def count(self) -> Statement:
        return f"SELECT COUNT(*) FROM {self.deps}", []

    def results(self, child: str) -> Statement:
        """The parents of ``child`` (id, status, result), in id order."""
        params: list[Any] = []
        sql = (
            f"SELECT j.id, j.status, j.result FROM {self.deps} d JOIN {self.t} j "
            f"ON j.id = d.parent_id WHERE d.child_id = {self.q.bind(params, child)} "
            "ORDER BY d.parent_id"
        )
        return sql, params


def is_bad(status: JobStatus) -> bool:
    """A parent that ended without a result (failed or cancelled)."""
    return status in (JobStatus.FAILED, JobStatus.CANCELLED)
