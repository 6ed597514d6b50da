"""The store's held connections (``_store/conns.py``): reused between statements, bounded,
recycled by age, and never reused once broken or cancelled midway; on MariaDB and on
PostgreSQL (a connection killed with ``KILL`` / ``pg_terminate_backend``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event

from aqueue._errors import StoreError
from aqueue._store.conns import HeldPool, alive
from aqueue._store.store import Store

from ..chaos.harness import wait_for
from ..conftest import unique
from .sqlproxy import Dialect, kill_sql, session_id_sql, sleep_sql, url_of


@pytest.fixture(params=["mysql", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    s = Store(url_of(request.param), table=unique("t"), pool_size=3)
    try:
        yield s
    finally:
        await s.close()


def _dialect(store: Store) -> Dialect:
    return "postgres" if store.engine.dialect.name == "postgresql" else "mysql"


async def _conn_id(store: Store) -> int:
    return int((await store.db.fetch(session_id_sql(_dialect(store))))[0][0])


async def _kill(store: Store, victim: int) -> None:
    """End the connection ``victim`` from another one, as an operator would."""
    other = Store(url_of(_dialect(store)), table=store.table_name)
    try:
        await other.db.execute(kill_sql(_dialect(store), victim))
    finally:
        await other.close()


async def test_statements_reuse_one_connection(store: Store) -> None:
    ids = {await _conn_id(store) for _ in range(20)}
    assert len(ids) == 1


async def test_idle_connections_are_bounded(store: Store) -> None:
    slow_id = {
        "mysql": "SELECT CONNECTION_ID() + SLEEP(0.05) * 0",
        "postgres": "SELECT pg_backend_pid() FROM pg_sleep(0.05)",
    }[_dialect(store)]

    async def slow() -> int:
        return int((await store.db.fetch(slow_id))[0][0])

    ids = await asyncio.gather(*(slow() for _ in range(8)))
    # eight at once: the engine's bound (pool_size 3 + overflow 3) still holds
    assert len(set(ids)) == 6
    assert len(store.db.conns.idle) == 3  # only pool_size of them kept held
    later = {await _conn_id(store) for _ in range(5)}
    assert later <= set(ids)


async def test_old_connections_go_back_to_the_engine(store: Store) -> None:
    checkins: list[object] = []
    event.listen(store.engine.sync_engine, "checkin", lambda *a: checkins.append(a))
    for _ in range(3):
        await _conn_id(store)
    assert checkins == []  # held between statements
    await store.db.conns.close()
    assert len(checkins) == 1
    store.db.conns = HeldPool(store.engine, keep=3, recycle=0.0)
    for _ in range(3):
        await _conn_id(store)
    # past its age a held connection goes back to the engine before the next statement
    # (whose pool_recycle then replaces the driver connection once it is old enough)
    assert len(checkins) == 3


async def test_cancelled_statement_discards_its_connection(store: Store) -> None:
    before = await _conn_id(store)
    task = asyncio.create_task(store.db.fetch(sleep_sql(_dialect(store), 5)))
    deadline = asyncio.get_running_loop().time() + 5
    while not task.done() and store.db.conns.idle and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)  # until the statement holds the connection
    assert not store.db.conns.idle
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await _conn_id(store)
    assert after != before  # the cancelled one, its state unknown, is not reused


async def test_connection_killed_while_idle_is_replaced_before_sending(store: Store) -> None:
    victim = await _conn_id(store)
    await _kill(store, victim)
    await wait_for(lambda: not alive(store.db.conns.idle[0].raw), 5, "the kill seen")
    # closed by the server: not sent on (which would fail), replaced by a new connection
    assert await _conn_id(store) != victim
    assert await store.db.fetch("SELECT 1") == [(1,)]


async def test_connection_killed_during_a_statement_fails_it(store: Store) -> None:
    victim = await _conn_id(store)
    task = asyncio.create_task(store.db.fetch(sleep_sql(_dialect(store), 5)))
    await wait_for(lambda: not store.db.conns.idle, 5, "the statement holding it")
    await _kill(store, victim)
    with pytest.raises(StoreError):  # sent: its outcome is the caller's to judge
        await store.db.run("probe", lambda: task)
    assert await _conn_id(store) != victim


async def test_refused_statement_keeps_the_connection(store: Store) -> None:
    before = await _conn_id(store)
    bad = "SELECT no_such_column" + (" FROM DUAL" if _dialect(store) == "mysql" else "")
    with pytest.raises(StoreError):
        await store.db.run("bad", lambda: store.db.fetch(bad))
    assert await _conn_id(store) == before


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_claim_connections_never_reach_the_engine_with_autocommit_off(
    store: Store,
) -> None:
    held = await store.db.claim_conns.take()
    async with held.raw.cursor() as cur:
        await cur.execute("SELECT @@autocommit")
        assert (await cur.fetchone())[0] == 0  # a claim's UPDATE opens its transaction
        await cur.execute("COMMIT")
    await store.db.claim_conns.give(held)
    await store.db.claim_conns.close()  # lets go of it: closed for good, not pooled
    # were it pooled, one of these would get it, with autocommit still off
    many = await asyncio.gather(
        *(store.db.fetch("SELECT @@autocommit, SLEEP(0.01)") for _ in range(6))
    )
    assert all(r[0][0] == 1 for r in many)


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_claim_connections_never_reach_the_engine_on_postgres(store: Store) -> None:
    """asyncpg has no autocommit-off mode (a claim sends BEGIN), but a claim connection
    is still never pooled: once let go of, it is closed, and the statements after it run
    on the engine's own connections."""
    held = await store.db.claim_conns.take()
    assert await held.raw.execute("BEGIN") == "BEGIN"
    assert await held.raw.execute("COMMIT") == "COMMIT"
    await store.db.claim_conns.give(held)
    await store.db.claim_conns.close()
    assert held.raw.is_closed()
    await asyncio.gather(*(store.db.fetch(sleep_sql("postgres", 0.01)) for _ in range(6)))
    assert len(store.db.conns.idle) == 3
    assert all(h.raw is not held.raw and alive(h.raw) for h in store.db.conns.idle)
