"""The jobs table and its versioned schema (SQLAlchemy Core; MySQL/MariaDB and SQLite).

Times are integer microseconds since the UNIX epoch (UTC): portable, exact, and cheap to
compare; leases of a second and delays of 10 ms need no DATETIME(6) arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

SCHEMA_VERSION = 1

_LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def build_tables(table_name: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The jobs table ``table_name`` and its ``<table_name>_meta`` version table."""
    md = sa.MetaData()
    jobs = sa.Table(
        table_name,
        md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("task", sa.String(191), nullable=False),
        sa.Column("payload", _LongText, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stalls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_at", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_token", sa.String(36)),
        sa.Column("leased_until", sa.BigInteger),
        sa.Column("dispatched_at", sa.BigInteger),
        sa.Column("dispatch_epoch", sa.String(36)),
        sa.Column("result", _LongText),
        sa.Column("error", _LongText),
        sa.Column("unique_key", sa.String(191)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger),
        sa.Index(f"ix_{table_name}_qsr", "queue", "status", "run_at"),
        sa.Index(f"ix_{table_name}_owner", "lease_owner", "status"),
        sa.Index(f"ix_{table_name}_lease", "status", "leased_until"),
        sa.Index(f"ix_{table_name}_fin", "status", "finished_at"),
        # Inline in CREATE TABLE (not a later CREATE INDEX): a second process must never
        # write into the table before uniqueness is enforced.
        sa.UniqueConstraint("queue", "unique_key", name=f"ux_{table_name}_unique"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    meta = sa.Table(
        f"{table_name}_meta",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
        mysql_engine="InnoDB",
    )
    return md, jobs, meta


#: Migrations from version N to N+1, run by ``python -m aqueue db upgrade``.
MIGRATIONS: dict[int, Callable[[sa.Connection, sa.Table], None]] = {}
