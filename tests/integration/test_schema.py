"""The jobs table's schema: identifiers compare as SQLite, Redis and Python compare them
(byte by byte), and `db upgrade` takes a schema-1 table to schema 4 without losing a job."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from aqueue import ConfigurationError, Job, JobStatus
from aqueue._store.schema import SCHEMA_VERSION
from aqueue._store.store import Store

from ..conftest import QueueFactory, unique


async def _indexes(store: Store) -> dict[str, list[str]]:
    """Secondary indexes (not the unique key), by name without the table's prefix."""
    async with store.engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes(store.table_name))
    prefix = f"ix_{store.table_name}_"
    return {
        str(ix["name"]).removeprefix(prefix): list(ix["column_names"])
        for ix in indexes
        if str(ix["name"]).startswith(prefix)
    }


SCHEMA_3_INDEXES = {"qsr": ["queue", "status", "run_at"]}


async def _collations(store: Store) -> set[str]:
    if store.url.get_backend_name() == "postgresql":
        rows = await store.db.fetch(
            "SELECT DISTINCT collation_name FROM information_schema.columns WHERE "
            "table_name = $1 AND data_type = 'character varying'",
            (store.table_name,),
        )
        return {str(r[0]) for r in rows}
    rows = await store.db.fetch(
        "SELECT DISTINCT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLLATION_NAME IS NOT NULL",
        (store.table_name,),
    )
    return {str(r[0]) for r in rows}


async def _columns(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        cols = await conn.run_sync(lambda c: sa.inspect(c).get_columns(store.table_name))
    return {str(c["name"]) for c in cols}


async def _tables(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


SCHEMA_4_COLUMNS = {"parents_left", "has_children", "progress", "progress_message", "tags"}


async def _downgrade_to_1(store: Store) -> None:
    """Turn a fresh schema-4 table into what schema 1 created."""
    t = store.sql.t
    for side in ("deps", "tags"):
        await store.db.execute(f"DROP TABLE {store.table_name}_{side}")
    for col in sorted(SCHEMA_4_COLUMNS):
        await store.db.execute(f"ALTER TABLE {t} DROP COLUMN {col}")
    fin, owner, lease = (f"ix_{store.table_name}_{n}" for n in ("fin", "owner", "lease"))
    if store.url.get_backend_name() in ("sqlite", "postgresql"):
        await store.db.execute(f"CREATE INDEX {fin} ON {t} (status, finished_at)")
        await store.db.execute(f"CREATE INDEX {owner} ON {t} (lease_owner, status)")
        await store.db.execute(f"CREATE INDEX {lease} ON {t} (status, leased_until)")
    else:
        await store.db.execute(
            f"ALTER TABLE {t} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, "
            f"ADD INDEX {fin} (status, finished_at), ADD INDEX {owner} (lease_owner, status), "
            f"ADD INDEX {lease} (status, leased_until)"
        )
    await store.db.execute(
        f"UPDATE {store.table_name}_meta SET value = '1' WHERE name = 'schema_version'"
    )


async def test_ids_queues_and_unique_keys_differing_in_case_are_distinct(
    make_queue: QueueFactory,
) -> None:
    upper, lower = make_queue("Emails"), make_queue("emails")
    jobs: list[Job] = []
    for q in (upper, lower):

        @q.task
        async def send(n: int) -> None:
            return None

        jobs.append(await send.options(job_id=f"{q.name}-1").enqueue(1))
        jobs.append(await send.options(unique_key=f"{q.name}:k").enqueue(2))
    assert len({j.id for j in jobs}) == 4
    for q in (upper, lower):
        counts = await q.counts()
        assert counts[JobStatus.TODO] == 2 and sum(counts.values()) == 2
        for job_id in await q.job_ids("todo"):
            assert (await q.job(job_id).info()).queue == q.name


async def test_db_upgrade_from_schema_1(make_queue: QueueFactory, backend: str) -> None:
    q = make_queue()

    @q.task
    async def t(n: int) -> None:
        return None

    job = await t.options(job_id="kept").enqueue(1)
    store = (await q._backend()).store
    assert await _indexes(store) == SCHEMA_3_INDEXES
    if backend != "sqlite":  # compared byte by byte, whatever the server's default
        assert await _collations(store) == {"utf8mb4_bin" if backend == "mysql" else "C"}

    await _downgrade_to_1(store)
    assert not SCHEMA_4_COLUMNS & await _columns(store)
    assert (await _indexes(store))["owner"] == ["lease_owner", "status"]
    assert (await _indexes(store))["lease"] == ["status", "leased_until"]
    fresh = Store(str(store.url), table=store.table_name)
    try:
        with pytest.raises(ConfigurationError, match="db upgrade"):
            await fresh.init_schema()
        assert await fresh.upgrade_schema() == (1, SCHEMA_VERSION)
        assert await fresh.init_schema() == SCHEMA_VERSION
        assert await _indexes(fresh) == SCHEMA_3_INDEXES
        assert await _columns(fresh) >= SCHEMA_4_COLUMNS
        sides = {f"{store.table_name}_deps", f"{store.table_name}_tags"}
        assert sides <= await _tables(fresh)
        # an upgrade interrupted after some of its DDL (MySQL commits each ALTER) is run
        # again over a table that already has part of schema 4
        await store.db.execute(f"DROP TABLE {store.table_name}_tags")
        await store.db.execute(
            f"UPDATE {store.table_name}_meta SET value = '3' WHERE name = 'schema_version'"
        )
        assert await fresh.upgrade_schema() == (3, SCHEMA_VERSION)
        assert sides <= await _tables(fresh)
        if backend != "sqlite":
            assert await _collations(fresh) == {"utf8mb4_bin" if backend == "mysql" else "C"}
        assert await fresh.upgrade_schema() == (SCHEMA_VERSION, SCHEMA_VERSION)
    finally:
        await fresh.close()
    info = await job.info()
    assert info.status is JobStatus.TODO and info.parents_left == 0 and info.tags is None
    # Upgraded, ids that differ only in case are distinct jobs.
    other = await t.options(job_id="KEPT").enqueue(2)
    assert other.id == "KEPT"
    assert (await other.info()).payload != (await job.info()).payload


async def test_six_stores_creating_one_table_at_once_all_succeed(db_url: str, backend: str) -> None:
    table = unique("race")
    stores = [Store(db_url, table=table) for _ in range(6)]
    try:
        assert await asyncio.gather(*(s.init_schema() for s in stores)) == [SCHEMA_VERSION] * 6
        if backend == "postgres":
            # the unique key skips the rows without one (most jobs)
            rows = await stores[0].db.fetch(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1", (f"ux_{table}_unique",)
            )
            assert "WHERE (unique_key IS NOT NULL)" in rows[0][0]
    finally:
        await stores[0].drop_schema()
        for s in stores:
            await s.close()
