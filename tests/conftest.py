"""Shared fixtures: real Redis (127.0.0.1:6379), real MariaDB (127.0.0.1:3306/test) and
real PostgreSQL (127.0.0.1:5432/test), plus SQLite. Every test gets its own queue name,
key prefix and table, and cleans up."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from aqueue import Queue
from aqueue._store.store import Store

REDIS_URL = os.environ.get("AQUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MYSQL_URL = os.environ.get("AQUEUE_TEST_MYSQL_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
POSTGRES_URL = os.environ.get(
    "AQUEUE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["mysql", "postgres", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> str:
    if backend == "mysql":
        return MYSQL_URL
    if backend == "postgres":
        return POSTGRES_URL
    return f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}"


QueueFactory = Callable[..., Queue]


@pytest.fixture
async def make_queue(db_url: str) -> AsyncIterator[QueueFactory]:
    """Build isolated queues: unique name, key prefix and table; dropped afterwards."""
    made: list[Queue] = []
    table = unique("t")
    prefix = unique("p")

    def factory(name: str | None = None, **kwargs: Any) -> Queue:
        kwargs.setdefault("redis_url", REDIS_URL)
        kwargs.setdefault("database_url", db_url)
        kwargs.setdefault("table", table)
        kwargs.setdefault("key_prefix", prefix)
        q = Queue(name or "q", **kwargs)
        made.append(q)
        return q

    yield factory
    for q in made:
        await q.close()
    store = Store(db_url, table=table)
    try:
        await store.drop_schema()
    finally:
        await store.close()
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{{{prefix}:*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(REDIS_URL)
    yield r
    await r.aclose()
