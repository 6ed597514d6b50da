"""The same round trip under uvloop (what `python -m aqueue run` uses when installed), on
MariaDB and on PostgreSQL (asyncpg runs its own protocol on the loop's transports)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aqueue import Backoff, JobFailedError, JobStatus, Queue, Runner, RunnerConfig
from aqueue._store.store import Store

from ..conftest import MYSQL_URL, POSTGRES_URL, REDIS_URL

uvloop = pytest.importorskip("uvloop")


@pytest.mark.parametrize("sql_url", [MYSQL_URL, POSTGRES_URL], ids=["mysql", "postgres"])
def test_round_trip_and_retries_under_uvloop(sql_url: str) -> None:
    table = f"t_{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        q = Queue(
            "uv",
            redis_url=REDIS_URL,
            database_url=sql_url,
            table=table,
            key_prefix=f"p_{uuid.uuid4().hex[:8]}",
        )

        @q.task
        async def add(a: int, b: int) -> int:
            return a + b

        @q.task(retries=1, backoff=Backoff(base=0.01, jitter=0))
        async def bad() -> None:
            raise RuntimeError("under uvloop")

        try:
            ok = [await add.enqueue(i, i) for i in range(50)]
            ko = await bad.enqueue()
            await Runner(q, RunnerConfig(burst=True, handle_signals=False)).run()
            assert [await j.result(timeout=1) for j in ok] == [2 * i for i in range(50)]
            assert await ko.status() is JobStatus.FAILED
            with pytest.raises(JobFailedError, match="under uvloop"):
                await ko.result(timeout=1)
        finally:
            await q.purge()
            await q.close()
            store = Store(sql_url, table=table)
            await store.drop_schema()
            await store.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
