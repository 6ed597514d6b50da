"""PostgreSQL (asyncpg): what its statements do differently from the shared ones.

asyncpg prepares every statement with parameters and keeps the prepared statements of
each connection in a cache keyed by the SQL text; a text it has not seen costs a second
round trip (parse, then execute). So the statements here have one text whatever the
number of jobs they touch: a list of ids is one array parameter (``id = ANY($1)``), and a
batch of new jobs is one array per column (``unnest``), instead of a placeholder per
value. That also keeps a batch of any size under the protocol's 32,767 parameters.

Numbered placeholders are typed where the server could not infer the type: an integer is
sent as ``$n::bigint`` (in a ``CASE`` branch an untyped placeholder would be text), a
list of ids as ``$n::text[]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..._models import IdRun, JobStatus, NewJob
from .base import Statement
from .claims import Queries

# The unnest arrays of a batch insert, in NewJob's field order (its first nine fields).
_INSERT_ARRAYS = (
    "text[]",  # id
    "text[]",  # queue
    "text[]",  # task
    "text[]",  # payload
    "int[]",  # priority
    "int[]",  # max_attempts
    "bigint[]",  # run_at
    "bigint[]",  # created_at
    "text[]",  # unique_key
)


class PostgresQueries(Queries):
    mark = "$"  # numbered: see bind
    insert_or_ignore = "INSERT"  # with on_conflict_ignore after the values
    on_conflict_ignore = " ON CONFLICT DO NOTHING"
    # clock_timestamp(), not now(): now() is the transaction's start.
    server_time_sql = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::bigint"
    # Row locks keep other writers off the claimed jobs, as on MySQL; the claim costs a
    # BEGIN round trip (asyncpg has no autocommit-off mode), far less than its commit.
    holds_claims_open = True

    @staticmethod
    def session(*, sqlite_synchronous: str, lock_wait_timeout: int) -> list[str]:
        return []  # settings go in the startup packet: see connect_args

    @staticmethod
    def connect_args(*, lock_wait_timeout: int) -> dict[str, Any]:
        return {
            "server_settings": {
                "application_name": "aqueue",
                # READ COMMITTED is the server's default; say so in case the database's
                # is another (the compare-and-sets are written for it).
                "default_transaction_isolation": "read committed",
                # A statement waiting on a row lock fails (55P03) and is retried, as
                # MySQL's innodb_lock_wait_timeout.
                "lock_timeout": f"{int(lock_wait_timeout)}s",
                # Every statement is small: compiling it is never worth the time.
                "jit": "off",
            }
        }

    # -- placeholders ---------------------------------------------------------------

    def bind(self, params: list[Any], value: Any) -> str:
        params.append(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"${len(params)}::bigint"
        return f"${len(params)}"

    def bind_all(self, params: list[Any], values: Sequence[Any]) -> str:
        return ", ".join(self.bind(params, v) for v in values)

    def ids_in(self, params: list[Any], ids: Sequence[str]) -> str:
        params.append(list(ids))
        return f"id = ANY(${len(params)}::text[])"

    def ids_not_in(self, params: list[Any], ids: Sequence[str]) -> str:
        params.append(list(ids))
        return f"id <> ALL(${len(params)}::text[])"

    # -- statements written differently -----------------------------------------------

    def contains(self, column: str, placeholder: str) -> str:
        return f"strpos({column}, {placeholder}) > 0"

    def insert(self, jobs: Sequence[NewJob], now: int, *, careful: bool) -> Statement:
        cols = (
            "id, queue, task, payload, priority, max_attempts, run_at, created_at, unique_key, "
            "status, attempts, stalls, updated_at"
        )
        params: list[Any] = [[j[k] for j in jobs] for k in range(len(_INSERT_ARRAYS))]
        arrays = ", ".join(f"${k + 1}::{t}" for k, t in enumerate(_INSERT_ARRAYS))
        params.append(now)
        sql = (
            f"INSERT INTO {self.t} ({cols}) SELECT u.*, 'todo', 0, 0, ${len(params)}::bigint "
            f"FROM unnest({arrays}) AS u"
        )
        if careful:
            sql += self.on_conflict_ignore
        return sql, params

    def mark_dispatched(
        self,
        marks: Sequence[tuple[str, int]],
        epoch: str,
        now: int,
        runs: Sequence[tuple[IdRun, int]],
        unmarked_only: bool,
    ) -> Statement:
        """The shared mark, on the rows it can lock at once. Its OR of conditions is a
        bitmap scan, which locks rows in heap order, where claims, finishes and renewals
        (one ``id = ANY`` on the primary key) lock theirs in id order: under load they
        deadlocked (detected only after the
        server's deadlock_timeout, 1 s) and a renewal queued behind them missed its lease
        (the soak on PostgreSQL). A row locked by another writer needs no mark: a claim
        sets ``dispatched_at`` itself, a finish or renewal means it was dispatched, and a
        skipped mark is a re-dispatch by the sweeper at worst, as any mark lost."""
        sql, params = super().mark_dispatched(marks, epoch, now, runs, unmarked_only)
        update, where = sql.split(" WHERE ", 1)
        locked = f"SELECT id FROM {self.t} WHERE {where} FOR UPDATE SKIP LOCKED"
        return f"{update} WHERE id = ANY(ARRAY({locked}))", params

    def record_first_seen(self, key: str, now: int) -> Statement:
        sql, params = super().record_first_seen(key, now)
        return sql + self.on_conflict_ignore, params

    def estimate(self, queue: str, status: JobStatus) -> Statement | None:
        # the planner's estimate, from the table's statistics (ANALYZE, autovacuum)
        b = self.bind
        params: list[Any] = []
        sql = (
            f"EXPLAIN SELECT 1 FROM {self.t} WHERE queue = {b(params, queue)} "
            f"AND status = {b(params, status.value)}"
        )
        return sql, params

    @staticmethod
    def estimated(plan: Sequence[Sequence[Any]]) -> int | None:
        found = re.search(r" rows=(\d+) ", str(plan[0][0])) if plan else None
        return int(found.group(1)) if found else None
