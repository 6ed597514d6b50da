"""SQL statements per job: plain jobs vs a chord (a group of N jobs + one callback).

    python benchmarks/workflow_cost.py [--jobs 10000] [--database-url URL]

Counts every statement aqueue sends (client side, in this process: the producer and an
in-process burst runner), by wrapping the executor's statement calls. A count on the
server (MariaDB's ``Com_*``, PostgreSQL's ``xact_commit``) would also see every other
client of a shared server; this one sees exactly this queue's. ``BEGIN``/``COMMIT`` of a
transaction count as statements.

Checks that the chord's callback ran exactly once, with every result in the group's
order. Prints one line per phase and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aqueue
from aqueue import Runner, RunnerConfig
from aqueue._store import executor as ex

COUNTS: Counter[str] = Counter()


def _kind(sql: str) -> str:
    return sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"


def _count_statements() -> None:
    """Wrap each place a statement leaves the executor (plain, open claim, transaction)."""

    def wrap(owner: Any, name: str, sql_arg: int) -> None:
        inner: Callable[..., Awaitable[Any]] = getattr(owner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            COUNTS[_kind(args[sql_arg])] += 1
            return await inner(*args, **kwargs)

        setattr(owner, name, counted)

    wrap(ex.Executor, "_execute_now", 1)
    wrap(ex.Executor, "fetch", 1)
    wrap(ex.Executor, "_open_statement", 2)
    wrap(ex.Executor, "_open_query", 2)
    wrap(ex.Tx, "execute", 1)
    wrap(ex.Tx, "fetch", 1)
    commit = ex.Executor._commit

    async def counted_commit(self: ex.Executor, raw: Any) -> None:
        COUNTS["COMMIT"] += 1
        await commit(self, raw)

    ex.Executor._commit = counted_commit  # type: ignore[method-assign]


def _make_queue(database_url: str, redis_url: str) -> aqueue.Queue:
    suffix = uuid.uuid4().hex[:8]
    return aqueue.Queue(
        f"wfcost_{suffix}",
        redis_url=redis_url,
        database_url=database_url,
        table=f"wfcost_{suffix}",
        key_prefix=f"wfcost_{suffix}",
    )


async def _phase(name: str, n: int, go: Callable[[], Awaitable[None]]) -> float:
    COUNTS.clear()
    t0 = time.perf_counter()
    await go()
    elapsed = time.perf_counter() - t0
    total = sum(COUNTS.values())
    kinds = ", ".join(f"{k} {v}" for k, v in COUNTS.most_common())
    per_job = total / n
    print(
        f"{name}: {n:,} jobs, {elapsed:.1f} s, {total:,} statements = {per_job:.3f}/job ({kinds})"
    )
    return total / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("AQUEUE_DATABASE_URL", "mysql+asyncmy://root@127.0.0.1:3306/test"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("AQUEUE_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    n = args.jobs
    q = _make_queue(args.database_url, args.redis_url)
    calls: list[list[int]] = []

    @q.task
    async def square(x: int) -> int:
        return x * x

    @q.task
    async def total(results: list[int]) -> int:
        calls.append(results)
        return sum(results)

    def runner() -> Runner:
        return Runner(
            q, RunnerConfig(burst=True, handle_signals=False, concurrency=args.concurrency)
        )

    await q.connect()
    _count_statements()
    try:

        async def plain() -> None:
            for k in range(0, n, 1000):
                await q.enqueue_many([(square, (i,), {}) for i in range(k, min(n, k + 1000))])
            await runner().run()

        async def chord() -> None:
            group = aqueue.group(*(square.s(i) for i in range(n)))
            callback = await aqueue.chord(group, total.s()).enqueue()
            await runner().run()
            assert await callback.result(timeout=30) == sum(i * i for i in range(n))

        per_plain = await _phase("plain jobs", n, plain)
        per_chord = await _phase(f"chord (group of {n:,} + callback)", n + 1, chord)
        assert calls == [[i * i for i in range(n)]], "the callback ran more than once"
        print(
            f"callback runs: {len(calls)}; statements per job, chord / plain: "
            f"{per_chord / per_plain:.2f}x"
        )
    finally:
        await q.purge()
        store = (await q._backend()).store
        await q.close()
        await store.drop_schema()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
