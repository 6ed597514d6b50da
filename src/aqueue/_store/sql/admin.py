"""The statements of the operators' reads and bulk actions (pure builders, as in
``base``): jobs found by a filter, newest first, in keyset pages; the age of a backlog;
repush, cancel and delete of many jobs by id.

A page is ordered by id, descending: ids are in creation order to the millisecond, so
the newest jobs come first, and the next page starts below the last id shown, which
costs the same on the millionth row as on the first (no ``OFFSET``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import JobStatus
from ..values import JobQuery
from .base import _PUT_BACK, JOB_COLUMNS, BaseQueries, Statement


class AdminQueries(BaseQueries):
    """Filters, pages and bulk actions over one jobs table."""

    by_primary_key = ""
    """The hint that makes a read go down the primary key (MySQL/MariaDB, whose optimizer
    would otherwise sort the queue's whole ``(queue, status, run_at)`` range)."""

    def contains(self, column: str, placeholder: str) -> str:
        """SQL true when ``column`` holds the text bound at ``placeholder``, case
        sensitive, no character special (a ``LIKE`` pattern would read ``%`` and ``_``
        as wildcards, and SQLite's ``LIKE`` ignores case)."""
        return f"INSTR({column}, {placeholder}) > 0"

    def where_query(self, query: JobQuery, params: list[Any]) -> str:
        """The conditions of ``query``, ANDed."""
        b = self.bind
        where = [f"queue = {b(params, query.queue)}"]
        if query.statuses:
            where.append(f"status IN ({self.bind_all(params, [s.value for s in query.statuses])})")
        if query.task is not None:
            where.append(f"task = {b(params, query.task)}")
        if query.job_id is not None:
            where.append(f"id = {b(params, query.job_id)}")
        if query.created_from is not None:
            where.append(f"created_at >= {b(params, query.created_from)}")
        if query.created_to is not None:
            where.append(f"created_at < {b(params, query.created_to)}")
        if query.text:
            text = query.text
            where.append(
                f"({self.contains('payload', b(params, text))} OR "
                f"{self.contains('error', b(params, text))})"
            )
        if query.before_id is not None:
            where.append(f"id < {b(params, query.before_id)}")
        if query.from_id is not None:
            where.append(f"id >= {b(params, query.from_id)}")
        return " AND ".join(where)

    def find_jobs(self, query: JobQuery, limit: int, tags: str | None = None) -> Statement:
        """``tags``: the tags table (quoted), read when the query names a tag."""
        params: list[Any] = []
        source = self.t
        if query.tag is not None:
            if tags is None:
                raise ValueError("a query by tag needs the tags table")
            source += self.tagged(tags, query.queue, query.tag, params)
        sql = (
            f"SELECT {JOB_COLUMNS} FROM {source} WHERE {self.where_query(query, params)} "
            f"ORDER BY id DESC LIMIT {int(limit)}"
        )
        return sql, params

    def tagged(self, tags: str, queue: str, tag: str, params: list[Any]) -> str:
        """The join that narrows a query to the jobs of ``queue`` tagged ``tag``: their
        ids read from the tags table's primary key ``(queue, tag, job_id)``, in a derived
        table that adds only ``job_id`` (the query's own columns stay unambiguous)."""
        b = self.bind
        return (
            f" JOIN (SELECT job_id FROM {tags} WHERE queue = {b(params, queue)} "
            f"AND tag = {b(params, tag)}) tagged ON id = tagged.job_id"
        )

    def scan_floor(self, queue: str, before_id: str | None, rows: int) -> Statement:
        """The ``rows``-th id of ``queue`` going down from ``before_id`` (the primary key,
        read in order: the window a search reads, bounded)."""
        b = self.bind
        params: list[Any] = []
        sql = f"SELECT id FROM {self.t}{self.by_primary_key} WHERE queue = {b(params, queue)}"
        if before_id is not None:
            sql += f" AND id < {b(params, before_id)}"
        sql += f" ORDER BY id DESC LIMIT 1 OFFSET {max(0, int(rows) - 1)}"
        return sql, params

    def count_capped(self, queue: str, cap: int) -> Statement:
        """One row: per status (in ``JobStatus`` order), its jobs counted up to ``cap``,
        each an index-only range of ``(queue, status, run_at)``."""
        b = self.bind
        params: list[Any] = []
        parts = [
            f"(SELECT COUNT(*) FROM (SELECT 1 AS one FROM {self.t} WHERE queue = "
            f"{b(params, queue)} AND status = {b(params, s.value)} LIMIT {int(cap)}) c{i})"
            for i, s in enumerate(JobStatus)
        ]
        return f"SELECT {', '.join(parts)}", params

    def estimate(self, queue: str, status: JobStatus) -> Statement | None:
        """The plan of counting ``queue``'s jobs in ``status``, whose row estimate
        :meth:`estimated` reads (``None``: the database gives none)."""
        return None

    @staticmethod
    def estimated(plan: Sequence[Sequence[Any]]) -> int | None:
        return None

    def table_rows(self) -> Statement | None:
        """The database's estimate of the table's rows, where its estimate of a range
        stops at half of them (InnoDB); ``None``: no such limit."""
        return None

    def oldest_due(self, queue: str, now: int) -> Statement:
        """The ``run_at`` of the longest-waiting due ``todo`` job (the ``(queue, status,
        run_at)`` index's first entry in range)."""
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT MIN(run_at) FROM {self.t} WHERE queue = {b(params, queue)} "
            f"AND status = 'todo' AND run_at <= {b(params, now)}"
        )
        return sql, params

    def finished_counts(self, queue: str, since: int, bucket: int, due_after: int) -> Statement:
        """Finished jobs per time bucket and status, read through the ``(queue, status,
        run_at)`` index (the bucket width inlined as an integer literal: ``%`` of a
        placeholder would need a type on PostgreSQL)."""
        b = self.bind
        params: list[Any] = []
        width = int(bucket)
        # A literal % is %% where the driver formats the text with %s placeholders.
        mod = "%%" if self.mark == "%s" else "%"
        sql = (
            f"SELECT finished_at - finished_at {mod} {width}, status, COUNT(*) FROM {self.t} "
            f"WHERE queue = {b(params, queue)} AND status IN ('done', 'failed', 'cancelled') "
            f"AND run_at >= {b(params, due_after)} AND finished_at >= {b(params, since)} "
            "GROUP BY 1, 2"
        )
        return sql, params

    def repush_jobs(self, queue: str, ids: Sequence[str], now: int) -> Statement:
        """Jobs of ``queue`` that are not ``running`` back to ``todo`` with fresh
        attempts, due now."""
        b = self.bind
        params: list[Any] = []
        sql = (
            f"UPDATE {self.t} SET status = 'todo', attempts = 0, stalls = 0, {_PUT_BACK}, "
            "dispatched_at = NULL, finished_at = NULL, result = NULL, error = NULL, "
            f"updated_at = {b(params, now)}, run_at = {b(params, now)} "
            f"WHERE {self.ids_in(params, ids)} AND queue = {b(params, queue)} "
            "AND status <> 'running'"
        )
        return sql, params

    def repushed(self, ids: Sequence[str], now: int) -> Statement:
        """The jobs among ``ids`` that a repush at ``now`` wrote."""
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT {JOB_COLUMNS} FROM {self.t} WHERE {self.ids_in(params, ids)} "
            f"AND status = 'todo' AND attempts = 0 AND updated_at = {b(params, now)}"
        )
        return sql, params

    def cancel_jobs(self, queue: str, ids: Sequence[str], reason: str, now: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"UPDATE {self.t} SET status = 'cancelled', error = {b(params, reason)}, "
            f"finished_at = {b(params, now)}, run_at = {self.earlier('run_at', params, now)}, "
            f"updated_at = {b(params, now)}, lease_token = NULL, "
            "leased_until = NULL, unique_key = NULL "
            f"WHERE {self.ids_in(params, ids)} AND queue = {b(params, queue)} "
            "AND status IN ('waiting', 'todo', 'running')"
        )
        return sql, params

    def cancelled(self, ids: Sequence[str], now: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT id FROM {self.t} WHERE {self.ids_in(params, ids)} "
            f"AND status = 'cancelled' AND updated_at = {b(params, now)}"
        )
        return sql, params

    def delete_jobs(self, queue: str, ids: Sequence[str]) -> Statement:
        params: list[Any] = []
        sql = (
            f"DELETE FROM {self.t} WHERE {self.ids_in(params, ids)} "
            f"AND queue = {self.bind(params, queue)} AND status <> 'running'"
        )
        return sql, params
