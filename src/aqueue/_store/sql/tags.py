"""The statements of tags (``<table>_tags``) and progress, as pure builders over a
dialect's :class:`~.base.BaseQueries` (its placeholders and insert-or-ignore form).

A tagged job is inserted with its ``tags`` column (the tags joined by ``,``, for display)
and one row ``(queue, tag, job_id)`` per tag, in one transaction
(:mod:`aqueue._store.tags`); a lookup by tag walks the tags table's primary key
``(queue, tag, job_id)`` and joins the jobs by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import NewJob
from .base import BaseQueries, Statement
from .mysql import MySQLQueries

_INSERT_COLUMNS = (
    "id, queue, task, payload, priority, max_attempts, run_at, created_at, unique_key, tags, "
    "status, attempts, stalls, updated_at"
)
JOBS_PER_INSERT = 1000
"""Jobs per INSERT (10 parameters each): under PostgreSQL's 32,767 and SQLite's 32,766."""
TAGS_PER_INSERT = 5000
"""Tag rows per INSERT (3 parameters each)."""


def shown(tags: Sequence[str]) -> str | None:
    """The ``tags`` column of a job: its tags joined by ``,`` (NULL for none)."""
    return ",".join(tags) or None


class TagQueries:
    """Tag and progress statements over ``q``'s jobs table and the tags table ``tags``
    (quoted)."""

    def __init__(self, q: BaseQueries, tags: str) -> None:
        self.q = q
        self.t = q.t
        self.tags = tags
        # A tag row that exists (an explicit job id enqueued again) is left as it is.
        self.ignore = (
            " ON DUPLICATE KEY UPDATE job_id = job_id"
            if isinstance(q, MySQLQueries)
            else q.on_conflict_ignore
        )

    def insert_jobs(self, jobs: Sequence[NewJob], now: int, *, careful: bool) -> Statement:
        """Insert jobs with their ``tags`` column (as ``BaseQueries.insert`` does
        otherwise); ``careful``: a row whose key exists is skipped."""
        params: list[Any] = []
        b = self.q.bind_all
        values = ", ".join(
            f"({b(params, [*j[:9], shown(j.tags)])}, 'todo', 0, 0, {int(now)})" for j in jobs
        )
        sql = f"INSERT INTO {self.t} ({_INSERT_COLUMNS}) VALUES {values}"
        if careful:
            sql += self.q.on_conflict_ignore
        return sql, params

    def present(self, ids: Sequence[str]) -> Statement:
        params: list[Any] = []
        return f"SELECT id FROM {self.t} WHERE {self.q.ids_in(params, ids)}", params

    def insert_tags(self, rows: Sequence[tuple[str, str, str]]) -> Statement:
        """``(queue, tag, job_id)`` rows; one that exists is skipped."""
        params: list[Any] = []
        values = ", ".join(f"({self.q.bind_all(params, r)})" for r in rows)
        sql = f"INSERT INTO {self.tags} (queue, tag, job_id) VALUES {values}{self.ignore}"
        return sql, params

    def set_shown(self, shown_tags: str, ids: Sequence[str]) -> Statement:
        """Set the ``tags`` column of the jobs ``ids`` (inserted without it)."""
        params: list[Any] = []
        b = self.q.bind
        sql = (
            f"UPDATE {self.t} SET tags = {b(params, shown_tags)} WHERE {self.q.ids_in(params, ids)}"
        )
        return sql, params

    def tags_of(self, ids: Sequence[str]) -> Statement:
        """The ``tags`` column of the tagged jobs among ``ids``."""
        params: list[Any] = []
        sql = (
            f"SELECT id, tags FROM {self.t} WHERE {self.q.ids_in(params, ids)} AND tags IS NOT NULL"
        )
        return sql, params

    def delete_tags(self, queue: str, tags: Sequence[str], ids: Sequence[str]) -> Statement:
        """The tag rows of the jobs ``ids`` of ``queue`` (deleted jobs), whose tags are
        among ``tags``: a range of the primary key per tag."""
        params: list[Any] = []
        b = self.q.bind
        sql = (
            f"DELETE FROM {self.tags} WHERE queue = {b(params, queue)} "
            f"AND tag IN ({self.q.bind_all(params, tags)}) AND job_id"
            + self.q.ids_in(params, ids).removeprefix("id")
        )
        return sql, params

    def purge_tags(self, queue: str) -> Statement:
        params: list[Any] = []
        return f"DELETE FROM {self.tags} WHERE queue = {self.q.bind(params, queue)}", params

    def set_progress(
        self, job_id: str, token: str, progress: float, message: str | None
    ) -> Statement:
        """A running job's progress, fenced by its lease token (a run that lost its
        lease writes nothing)."""
        params: list[Any] = []
        b = self.q.bind
        sql = (
            f"UPDATE {self.t} SET progress = {b(params, float(progress))}, "
            f"progress_message = {b(params, message)} WHERE id = {b(params, job_id)} "
            f"AND status = 'running' AND lease_token = {b(params, token)}"
        )
        return sql, params
