"""MySQL/MariaDB (asyncmy): what its statements do differently from the shared ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..._models import JobStatus
from .base import Statement
from .claims import Queries


class MySQLQueries(Queries):
    mark = "%s"
    # A no-op update: the row whose key exists is left as it is, and counted as matched.
    on_conflict_ignore = " ON DUPLICATE KEY UPDATE id = id"
    server_time_sql = "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)"
    holds_claims_open = True
    by_primary_key = " FORCE INDEX (PRIMARY)"

    @staticmethod
    def session(*, sqlite_synchronous: str, lock_wait_timeout: int) -> list[str]:
        return [
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait_timeout)}",
        ]

    def record_first_seen(self, key: str, now: int) -> Statement:
        # Not INSERT IGNORE: MySQL answers an existing key with a warning, which the
        # driver reads back (SHOW WARNINGS, a round trip) and logs at WARNING level.
        b = self.bind
        params: list[Any] = []
        sql = (
            f"INSERT INTO {self.meta} (name, value) "
            f"VALUES ({b(params, key)}, {b(params, str(now))}) "
            "ON DUPLICATE KEY UPDATE name = name"
        )
        return sql, params

    def estimate(self, queue: str, status: JobStatus) -> Statement | None:
        # the optimizer's estimate of the (queue, status) index range (index dives)
        b = self.bind
        params: list[Any] = []
        sql = (
            f"EXPLAIN SELECT 1 FROM {self.t} WHERE queue = {b(params, queue)} "
            f"AND status = {b(params, status.value)}"
        )
        return sql, params

    @staticmethod
    def estimated(plan: Sequence[Sequence[Any]]) -> int | None:
        # EXPLAIN's columns: id, select_type, table, type, possible_keys, key, key_len,
        # ref, rows, Extra
        rows = plan[0][8] if plan and len(plan[0]) > 8 else None
        return int(rows) if rows is not None else None

    def table_rows(self) -> Statement | None:
        # InnoDB's estimate of a range is at most half the table's rows
        name = self.t.strip("`")
        params: list[Any] = []
        sql = (
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            f"AND TABLE_NAME = {self.bind(params, name)}"
        )
        return sql, params
