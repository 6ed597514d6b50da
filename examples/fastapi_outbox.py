"""An order and its confirmation job in one SQL transaction (transactional enqueue).

Needs ``pip install fastapi uvicorn``. The orders table and aqueue's jobs table live in
the same database: ``DATABASE_URL``, SQLite by default, or PostgreSQL
(``postgresql+asyncpg://user@host/db``, with ``aqueue[postgres]``) or MySQL/MariaDB
(``mysql+asyncmy://...``). ``REDIS_URL``, ``JOBS_TABLE`` and ``KEY_PREFIX`` are read from
the environment too. From the repository root, start the app and a runner (two shells,
the same environment)::

    export DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test
    uvicorn examples.fastapi_outbox:app
    python -m aqueue run examples.fastapi_outbox:queue

then::

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
        -d '{"item": "book"}'
    # {"order_id": 1, "job_id": "0190..."}
    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
        -d '{"item": " "}'
    # 422: the order is refused after the job was enqueued in the same transaction:
    # neither the order nor its job exists, nothing reaches Redis

The job row is written by the request's own session and sent to Redis right after the
session commits; see docs/transactional-enqueue.md.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from aqueue import Queue

metadata = sa.MetaData()
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item", sa.String(100), nullable=False),
    sa.Column("confirmed", sa.Boolean, nullable=False, default=False),
)


class OrderIn(BaseModel):
    item: str


def build(
    database_url: str, redis_url: str, *, table: str = "aqueue_jobs", key_prefix: str = "aq"
) -> FastAPI:
    """The app, its engine (``app.state.engine``) and its queue (``app.state.queue``)."""
    engine = create_async_engine(database_url)
    queue = Queue(
        "orders", database_url=database_url, redis_url=redis_url, table=table, key_prefix=key_prefix
    )

    @queue.task()
    async def send_confirmation(order_id: int) -> str:
        # A job of a committed order: its row is there (the same transaction wrote both).
        async with engine.begin() as conn:
            await conn.execute(
                orders.update().where(orders.c.id == order_id).values(confirmed=True)
            )
        return f"order {order_id} confirmed"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        await queue.connect()
        yield
        await queue.close()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.state.engine, app.state.queue = engine, queue

    @app.post("/orders")
    async def create_order(order: OrderIn) -> dict[str, object]:
        # session.begin(): committed when the block ends, rolled back when it raises.
        async with AsyncSession(engine) as session, session.begin():
            result = await session.execute(orders.insert().values(item=order.item))
            order_id = result.inserted_primary_key[0]
            job = await send_confirmation.options(connection=session).enqueue(order_id)
            if not order.item.strip():
                # Refused after the enqueue: the order and its job are rolled back together.
                raise HTTPException(status_code=422, detail="an order needs an item")
        return {"order_id": order_id, "job_id": job.id}

    return app


app = build(
    os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///orders.sqlite3"),
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    table=os.environ.get("JOBS_TABLE", "aqueue_jobs"),
    key_prefix=os.environ.get("KEY_PREFIX", "aq"),
)
queue: Queue = app.state.queue
