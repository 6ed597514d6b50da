"""The contract suites' fixtures: every ``JobStore`` (memory, SQLite, MariaDB,
PostgreSQL) and every ``MessageBroker`` (memory, Redis) behind one parametrized fixture
each, so one suite of behaviour runs over all of them. Each test gets its own table / key prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from aqueue._broker.base import FinishWaiters, MessageBroker
from aqueue._broker.broker import Broker
from aqueue._broker.notify import FinishListener
from aqueue._store.base import JobStore
from aqueue._store.store import Store
from aqueue.testing import MemoryBroker, MemoryFinishWaiters, MemoryStore

from ..conftest import MYSQL_URL, POSTGRES_URL, REDIS_URL, unique


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("mysql", marks=pytest.mark.mysql), "postgres"],
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        mem = MemoryStore()
        await mem.init_schema()
        yield mem
        await mem.close()
        return
    url = {
        "mysql": MYSQL_URL,
        "postgres": POSTGRES_URL,
        "sqlite": f"sqlite+aiosqlite:///{tmp_path / 'c.db'}",
    }[request.param]
    sql = Store(url, table=unique("c"))
    await sql.init_schema()
    try:
        yield sql
    finally:
        try:
            await sql.drop_schema()
        finally:
            await sql.close()


@pytest.fixture(params=["memory", "redis"])
async def broker_pair(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[MessageBroker, FinishWaiters]]:
    """A broker of a queue ``q`` and its finish waiters."""
    if request.param == "memory":
        mem = MemoryBroker(unique("p"), "q")
        waiters = MemoryFinishWaiters(mem)
        yield mem, waiters
        await waiters.close()
        await mem.close()
        return
    prefix = unique("p")
    broker = Broker(REDIS_URL, prefix, "q")
    listener = FinishListener(broker.redis, broker.keys.finished)
    try:
        yield broker, listener
    finally:
        await listener.close()
        await broker.close()
        r = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in r.scan_iter(match=f"{{{prefix}:*")]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()


@pytest.fixture
def broker(broker_pair: tuple[MessageBroker, FinishWaiters]) -> MessageBroker:
    return broker_pair[0]
