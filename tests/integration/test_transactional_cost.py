"""What transactional enqueue costs the caller (issue 18's target): one statement in the
caller's transaction for a plain job, and after its COMMIT nothing but the Redis push;
the dispatch mark that follows is aqueue's lazy bulk UPDATE, shared by every job the
producer pushed within its linger."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from aqueue._queue import outbox

from ..conftest import REDIS_URL, QueueFactory
from .test_transactional_enqueue import (  # noqa: F401 - fixtures used by name
    app_engine,
    counting_queue,
    orders,
    transaction,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("backend")


def count_calls(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[str]:
    """Record each call of ``obj.name`` (an async method) by ``name``."""
    calls: list[str] = []
    original: Callable[..., Awaitable[Any]] = getattr(obj, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return await original(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


@pytest.mark.parametrize("kind", ["session", "connection"])
async def test_one_insert_in_the_callers_transaction_and_only_the_push_after_it(
    make_queue: QueueFactory,
    app_engine: AsyncEngine,  # noqa: F811
    orders: sa.Table,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    q, _ = counting_queue(make_queue)
    await q.connect()
    be: Any = await q._backend()
    # Every statement on aqueue's own connections goes through the executor's _on_held
    # (claims, which no runner makes here, through update_open); each Redis push of new
    # jobs is one broker.dispatch call (one round trip).
    ours = count_calls(monkeypatch, be.store.db, "_on_held")
    ours += count_calls(monkeypatch, be.store.db, "update_open")
    pushes = count_calls(monkeypatch, be.broker, "dispatch")
    callers: list[str] = []

    def on_caller(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        callers.append(statement)

    event.listen(app_engine.sync_engine, "before_cursor_execute", on_caller)
    try:
        async with transaction(app_engine, kind) as tx:
            await tx.execute(orders.insert().values(id=1, item="book"))
            before = len(callers)
            job = await q.options(connection=tx).enqueue("send", "book")
            added = callers[before:]
            at_commit = len(callers)
            await tx.commit()
        await outbox.pushes_done()
    finally:
        event.remove(app_engine.sync_engine, "before_cursor_execute", on_caller)
    assert len(added) == 1, added
    assert added[0].lstrip().upper().startswith("INSERT INTO"), added[0]
    assert be.store.sql.t in added[0]
    assert callers[at_commit:] == []  # nothing on the caller's connection after COMMIT
    assert pushes == ["dispatch"]
    assert ours == []  # no SQL of aqueue's own from the enqueue through the push
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        ready = await r.lrange(be.broker.keys.ready, 0, -1)
    finally:
        await r.aclose()
    assert any(job.id.encode() in m for m in ready)


async def test_the_dispatch_marks_of_several_commits_share_one_update(
    make_queue: QueueFactory,
    app_engine: AsyncEngine,  # noqa: F811
    orders: sa.Table,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    q, _ = counting_queue(make_queue)
    await q.connect()
    be: Any = await q._backend()
    marks = count_calls(monkeypatch, be.store, "mark_dispatched")
    jobs = []
    for i in range(5):
        async with transaction(app_engine, "connection") as tx:
            await tx.execute(orders.insert().values(id=i + 1, item="book"))
            jobs.append(await q.options(connection=tx).enqueue("send", f"x{i}"))
            await tx.commit()
    await outbox.pushes_done()

    async def all_marked() -> bool:
        async with app_engine.connect() as conn:
            t = sa.table(be.store.sql.t, sa.column("id"), sa.column("dispatched_at"))
            query = sa.select(sa.func.count()).where(
                t.c.id.in_([j.id for j in jobs]), t.c.dispatched_at.is_not(None)
            )
            return (await conn.execute(query)).scalar_one() == len(jobs)

    await wait_for(all_marked, "the five jobs marked dispatched")
    # one UPDATE per linger period (1 s) for the producer; five commits in a few
    # milliseconds fall in one period, or two if one straddles its end
    assert 1 <= len(marks) <= 2, marks
