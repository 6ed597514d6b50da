"""The jobs table and its versioned schema (SQLAlchemy Core; MySQL/MariaDB, PostgreSQL and
SQLite).

Times are integer microseconds since the UNIX epoch (UTC): portable, exact, and cheap to
compare; leases of a second and delays of 10 ms need no DATETIME(6) arithmetic.

On MySQL/MariaDB (``utf8mb4_bin``) and PostgreSQL (``"C"``) the text columns compare byte
by byte, as SQLite, Redis and Python do: job ids, queue names and unique keys that differ
only in case are different, and a binary comparison is cheaper than a case-folding one in
every index lookup (the primary key is in every secondary index).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

SCHEMA_VERSION = 4

_LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _key(length: int) -> sa.types.TypeEngine[str]:
    """A text column that is compared and indexed: byte order everywhere (PostgreSQL's
    ``"C"`` collation, whatever the database's default)."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def build_tables(
    table_name: str, *, partial_unique: bool = False
) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The jobs table ``table_name`` and its ``<table_name>_meta`` version table; the
    same metadata also holds ``<table_name>_deps`` (a waiting job's parents) and
    ``<table_name>_tags`` (a job's tags, for lookups by tag): see :func:`side_tables`.

    ``partial_unique`` (PostgreSQL): the unique key is a partial unique index over the
    rows that have one. Every update of a row writes a new version of it, with an entry
    in each index that covers it: most jobs have no unique key, and their versions then
    skip this index. (MySQL rewrites a secondary index entry only when its columns
    change.) The tables are then created in one transaction (``Tables.init``), so the
    table is never visible without its unique index."""
    md = sa.MetaData()
    if partial_unique:
        unique: sa.Index | sa.UniqueConstraint = sa.Index(
            f"ux_{table_name}_unique",
            "queue",
            "unique_key",
            unique=True,
            postgresql_where=sa.text("unique_key IS NOT NULL"),
        )
    else:
        unique = sa.UniqueConstraint("queue", "unique_key", name=f"ux_{table_name}_unique")
    jobs = sa.Table(
        table_name,
        md,
        sa.Column("id", _key(36), primary_key=True),
        sa.Column("queue", _key(128), nullable=False),
        sa.Column("task", _key(191), nullable=False),
        sa.Column("payload", _LongText, nullable=False),
        sa.Column("status", _key(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stalls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_at", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", _key(64)),
        sa.Column("lease_token", _key(36)),
        sa.Column("leased_until", sa.BigInteger),
        sa.Column("dispatched_at", sa.BigInteger),
        sa.Column("dispatch_epoch", _key(36)),
        sa.Column("result", _LongText),
        sa.Column("error", _LongText),
        sa.Column("unique_key", _key(191)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger),
        # Schema 4. A ``waiting`` job's parents not yet finished: the finish of its last
        # parent moves it to ``todo`` (or cancels it) in the same statement batch.
        sa.Column("parents_left", sa.Integer, nullable=False, server_default="0"),
        # 1 once a job was named as a parent: only such a job's final finish reads the
        # deps table (a plain job's finish costs no statement more than before).
        sa.Column("has_children", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("progress", sa.Double),
        sa.Column("progress_message", _key(255)),
        # the job's tags joined by ',', for display (lookups use the tags table)
        sa.Column("tags", _key(255)),
        # The one secondary index a job's life moves: every claim and every finish
        # changes ``status``, and each index holding a changed column costs MariaDB an
        # entry moved per job, most of its CPU per job. It also serves what schema 2 had
        # two more indexes for (both moved by every finish): expired leases and a
        # runner's running jobs are read among the running jobs of one queue (at most its
        # runners' concurrency), and old finished jobs by ``run_at``, which is never
        # after ``finished_at`` (see ``purge_finished``).
        sa.Index(f"ix_{table_name}_qsr", "queue", "status", "run_at"),
        # Inline in CREATE TABLE (not a later CREATE INDEX): a second process must never
        # write into the table before uniqueness is enforced.
        unique,
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    meta = sa.Table(
        f"{table_name}_meta",
        md,
        sa.Column("name", _key(64), primary_key=True),
        sa.Column("value", _key(255), nullable=False),
        mysql_engine="InnoDB",
    )
    # Schema 4. Only a job enqueued with parents has rows here: plain jobs never touch it.
    sa.Table(
        f"{table_name}_deps",
        md,
        sa.Column("parent_id", _key(36), primary_key=True),
        sa.Column("child_id", _key(36), primary_key=True),
        # 1: the child runs even if this parent failed or was cancelled; 0: it is cancelled
        sa.Column("on_failure", sa.SmallInteger, nullable=False, server_default="0"),
        # a job's parents, read when it runs (a chain's or chord's results are its input)
        sa.Index(f"ix_{table_name}_deps_child", "child_id"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    sa.Table(
        f"{table_name}_tags",
        md,
        sa.Column("queue", _key(128), primary_key=True),
        sa.Column("tag", _key(128), primary_key=True),
        sa.Column("job_id", _key(36), primary_key=True),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    return md, jobs, meta


def side_tables(jobs: sa.Table) -> tuple[sa.Table, sa.Table]:
    """The ``<table>_deps`` and ``<table>_tags`` tables built with ``jobs``."""
    tables = jobs.metadata.tables
    return tables[f"{jobs.name}_deps"], tables[f"{jobs.name}_tags"]


def _to_2(conn: sa.Connection, jobs: sa.Table) -> None:
    """Schema 1 -> 2: binary collation (MySQL/MariaDB), ``ix_<table>_fin`` on
    ``(queue, finished_at)``, no ``ix_<table>_owner``. Safe to run again after an
    interruption: MySQL commits each ALTER on its own, so the version row may lag behind
    the table."""
    prep = conn.dialect.identifier_preparer
    table = prep.quote(jobs.name)
    fin, owner = prep.quote(f"ix_{jobs.name}_fin"), prep.quote(f"ix_{jobs.name}_owner")
    indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(conn).get_indexes(jobs.name)}
    fin_done = indexes.get(f"ix_{jobs.name}_fin") == ["queue", "finished_at"]
    owner_done = f"ix_{jobs.name}_owner" not in indexes
    if conn.dialect.name not in ("mysql", "mariadb"):
        if not fin_done:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {fin}")
            conn.exec_driver_sql(f"CREATE INDEX {fin} ON {table} (queue, finished_at)")
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {owner}")
        return
    alter = [f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"]
    if not fin_done:
        alter.append(f"DROP INDEX {fin}, ADD INDEX {fin} (queue, finished_at)")
    if not owner_done:
        alter.append(f"DROP INDEX {owner}")
    conn.exec_driver_sql(", ".join(alter))


def _to_3(conn: sa.Connection, jobs: sa.Table) -> None:
    """Schema 2 -> 3: no ``ix_<table>_lease`` and no ``ix_<table>_fin`` (``ix_<table>_qsr``
    serves their queries). Safe to run again after an interruption."""
    prep = conn.dialect.identifier_preparer
    names = {ix["name"] for ix in sa.inspect(conn).get_indexes(jobs.name)}
    gone = [f"ix_{jobs.name}_{suffix}" for suffix in ("lease", "fin")]
    gone = [name for name in gone if name in names]
    if not gone:
        return
    if conn.dialect.name not in ("mysql", "mariadb"):
        for name in gone:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {prep.quote(name)}")
        return
    table = prep.quote(jobs.name)
    conn.exec_driver_sql(
        f"ALTER TABLE {table} " + ", ".join(f"DROP INDEX {prep.quote(n)}" for n in gone)
    )


_NEW_IN_4 = ("parents_left", "has_children", "progress", "progress_message", "tags")


def _to_4(conn: sa.Connection, jobs: sa.Table) -> None:
    """Schema 3 -> 4: the columns ``parents_left``, ``has_children``, ``progress``,
    ``progress_message`` and ``tags``, and the tables ``<table>_deps`` and ``<table>_tags``.
    Safe to run again after an interruption (MySQL commits each ALTER on its own): it
    adds only what is missing."""
    prep = conn.dialect.identifier_preparer
    table = prep.quote(jobs.name)
    have = {c["name"] for c in sa.inspect(conn).get_columns(jobs.name)}
    adds = []
    for name in _NEW_IN_4:
        if name in have:
            continue
        col = jobs.c[name]
        ddl = f"ADD COLUMN {prep.quote(name)} {col.type.compile(dialect=conn.dialect)}"
        if col.server_default is not None:
            ddl += " NOT NULL DEFAULT 0"
        adds.append(ddl)
    if adds and conn.dialect.name in ("mysql", "mariadb"):
        conn.exec_driver_sql(f"ALTER TABLE {table} " + ", ".join(adds))
    else:  # SQLite adds one column per ALTER
        for ddl in adds:
            conn.exec_driver_sql(f"ALTER TABLE {table} {ddl}")
    for side in side_tables(jobs):
        side.create(conn, checkfirst=True)


#: Migrations from version N to N+1, run by ``python -m aqueue db upgrade``.
MIGRATIONS: dict[int, Callable[[sa.Connection, sa.Table], None]] = {
    1: _to_2,
    2: _to_3,
    3: _to_4,
}
