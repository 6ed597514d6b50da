"""examples/fastapi_outbox.py, run: a POST writes an order and enqueues its confirmation
in one transaction; a refused request rolls both back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from aqueue import Runner, RunnerConfig
from aqueue._store.store import Store

from ..conftest import REDIS_URL, unique

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from examples.fastapi_outbox import build, orders  # noqa: E402

pytestmark = [pytest.mark.acceptance, pytest.mark.usefixtures("backend")]


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    table = unique("t")
    app = build(db_url, REDIS_URL, table=table, key_prefix=unique("p"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c
        await app.state.queue.purge()
        async with app.state.engine.begin() as conn:
            await conn.run_sync(orders.drop)
    store = Store(db_url, table=table)
    try:
        await store.drop_schema()
    finally:
        await store.close()


async def test_an_order_and_its_job_commit_together(client: httpx.AsyncClient) -> None:
    app = client.app  # type: ignore[attr-defined]
    queue, engine = app.state.queue, app.state.engine
    response = await client.post("/orders", json={"item": "book"})
    assert response.status_code == 200, response.text
    body = response.json()
    runner = Runner(queue, RunnerConfig(handle_signals=False, sweep_grace=30))
    task = asyncio.create_task(runner.run())
    try:
        job = queue.job(body["job_id"])
        assert await job.result(timeout=10) == f"order {body['order_id']} confirmed"
    finally:
        runner.stop()
        await asyncio.wait_for(task, 15)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(orders.c.id, orders.c.confirmed))).all()
    assert [tuple(r) for r in rows] == [(body["order_id"], True)]


async def test_a_refused_request_rolls_back_the_order_and_its_job(
    client: httpx.AsyncClient,
) -> None:
    app = client.app  # type: ignore[attr-defined]
    queue, engine = app.state.queue, app.state.engine
    response = await client.post("/orders", json={"item": " "})
    assert response.status_code == 422
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(orders.c.id))).all() == []
    counts = await queue.counts()
    assert sum(counts.values()) == 0  # the job enqueued before the refusal is gone too
