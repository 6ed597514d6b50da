"""The store's held connections (``_store/conns.py``): reused between statements, bounded,
recycled by age, and never reused once broken or cancelled midway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event

from aqueue._errors import StoreError
from aqueue._store.conns import HeldPool, alive
from aqueue._store.store import Store

from ..chaos.harness import wait_for
from ..conftest import MYSQL_URL, unique


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = Store(MYSQL_URL, table=unique("t"), pool_size=3)
    try:
        yield s
    finally:
        await s.close()


async def _conn_id(store: Store) -> int:
    return int((await store.db.fetch("SELECT CONNECTION_ID()"))[0][0])


async def test_statements_reuse_one_connection(store: Store) -> None:
    ids = {await _conn_id(store) for _ in range(20)}
    assert len(ids) == 1


async def test_idle_connections_are_bounded(store: Store) -> None:
    async def slow() -> int:
        return int((await store.db.fetch("SELECT CONNECTION_ID() + SLEEP(0.05) * 0"))[0][0])

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
    task = asyncio.create_task(store.db.fetch("SELECT SLEEP(5)"))
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
    other = Store(MYSQL_URL, table=store.table_name)
    try:
        await other.db.execute(f"KILL {victim}")
    finally:
        await other.close()
    await wait_for(lambda: not alive(store.db.conns.idle[0].raw), 5, "the kill seen")
    # closed by the server: not sent on (which would fail), replaced by a new connection
    assert await _conn_id(store) != victim
    assert await store.db.fetch("SELECT 1") == [(1,)]


async def test_connection_killed_during_a_statement_fails_it(store: Store) -> None:
    victim = await _conn_id(store)
    task = asyncio.create_task(store.db.fetch("SELECT SLEEP(5)"))
    await wait_for(lambda: not store.db.conns.idle, 5, "the statement holding it")
    other = Store(MYSQL_URL, table=store.table_name)
    try:
        await other.db.execute(f"KILL {victim}")
    finally:
        await other.close()
    with pytest.raises(StoreError):  # sent: its outcome is the caller's to judge
        await store.db.run("probe", lambda: task)
    assert await _conn_id(store) != victim


async def test_refused_statement_keeps_the_connection(store: Store) -> None:
    before = await _conn_id(store)
    with pytest.raises(StoreError):
        await store.db.run("bad", lambda: store.db.fetch("SELECT no_such_column FROM DUAL"))
    assert await _conn_id(store) == before


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
