"""examples/fastapi_outbox.py, run: a POST writes an order and enqueues its confirmation
in one transaction; a refused request rolls both back (on every store); and the app as
deployed, configured by its environment (PostgreSQL), with a CLI runner."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from aqueue import Runner, RunnerConfig
from aqueue._queue import outbox
from aqueue._store.store import Store

from ..conftest import POSTGRES_URL, REDIS_URL, unique
from .test_cli_acceptance import Procs, _bytecode_cache, clean_env, procs  # noqa: F401 - fixtures

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from examples.fastapi_outbox import build, orders  # noqa: E402

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_outbox.py"


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


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The example's settings from the environment, as a deployment sets them: PostgreSQL,
    with its own jobs table and key prefix."""
    env = {
        "DATABASE_URL": POSTGRES_URL,
        "REDIS_URL": REDIS_URL,
        "JOBS_TABLE": unique("t"),
        "KEY_PREFIX": unique("p"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


async def test_the_example_on_postgres_from_its_environment_with_a_cli_runner(
    example_env: dict[str, str],
    procs: Procs,  # noqa: F811 - the fixture imported above
) -> None:
    """The module-level app and queue, configured by the environment: a POST through the
    app, then the real ``python -m aqueue run examples.fastapi_outbox:queue --burst``."""
    spec = importlib.util.spec_from_file_location(unique("outbox"), EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    app, queue = example.app, example.queue
    assert app.state.engine.dialect.name == "postgresql"
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as c:
                response = await c.post("/orders", json={"item": "book"})
            assert response.status_code == 200, response.text
            body = response.json()
            await outbox.pushes_done()
            runner = procs.cli(
                "runner",
                *("run", "examples.fastapi_outbox:queue", "--burst"),
                cwd=ROOT,
                env=clean_env(**example_env, PYTHONPATH=str(ROOT)),
            )
            procs.finish(runner, "runner", timeout=60)
            job = queue.job(body["job_id"])
            assert await job.result(timeout=5) == f"order {body['order_id']} confirmed"
            async with app.state.engine.connect() as conn:
                rows = (await conn.execute(sa.select(orders.c.id, orders.c.confirmed))).all()
            assert [tuple(r) for r in rows] == [(body["order_id"], True)]
            await queue.purge()
    finally:
        engine = create_async_engine(POSTGRES_URL)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(orders.drop, checkfirst=True)
        finally:
            await engine.dispose()
        store = Store(POSTGRES_URL, table=example_env["JOBS_TABLE"])
        try:
            await store.drop_schema()
        finally:
            await store.close()
