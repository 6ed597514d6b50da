"""SQLite (aiosqlite): what its statements do differently from the shared ones."""

from __future__ import annotations

from .claims import Queries


class SQLiteQueries(Queries):
    mark = "?"
    insert_or_ignore = "INSERT OR IGNORE"
    on_conflict_ignore = " ON CONFLICT DO NOTHING"
    server_time_sql = "SELECT CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    # One writer at a time: an open claim would hold the database's write lock meanwhile.
    holds_claims_open = False

    @staticmethod
    def session(*, sqlite_synchronous: str, lock_wait_timeout: int) -> list[str]:
        return [
            "PRAGMA journal_mode=WAL",
            "PRAGMA busy_timeout=15000",
            f"PRAGMA synchronous={sqlite_synchronous}",
        ]
