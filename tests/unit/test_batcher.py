from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from aqueue._store.batcher import Batcher


async def test_coalesces_concurrent_requests_and_flushes_lone_ones_at_once() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        if len(batches) == 1:
            await gate.wait()
        return [i * 10 for i in items]

    b: Batcher[int, int] = Batcher("t", flush, max_items=100)
    first = asyncio.create_task(b.submit(1))
    while not batches:
        await asyncio.sleep(0)
    rest = [asyncio.create_task(b.submit(i)) for i in range(2, 52)]
    await asyncio.sleep(0)
    gate.set()
    assert await first == 10
    assert [await r for r in rest] == [i * 10 for i in range(2, 52)]
    assert batches[0] == [1]
    assert batches[1] == list(range(2, 52))
    await b.close()


async def test_a_linger_lets_requests_that_follow_a_lone_one_share_its_flush() -> None:
    """With a linger, the request that wakes an idle batcher waits for the ones right
    behind it (here: submitted while it lingers), and all go in one flush; with none
    (the default), it is flushed alone at once."""
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        return [i * 10 for i in items]

    for linger, expected in ((0.0, [[1], [2, 3]]), (0.05, [[1, 2, 3]])):
        b: Batcher[int, int] = Batcher("t", flush, max_items=100, linger=linger)
        await b.submit(0)  # the workers now wait, idle
        batches.clear()
        first = asyncio.create_task(b.submit(1))
        for _ in range(5):  # the worker wakes and flushes, or lingers
            await asyncio.sleep(0)
        assert bool(batches) is (linger == 0.0)
        rest = [asyncio.create_task(b.submit(i)) for i in (2, 3)]
        assert [await first, *[await r for r in rest]] == [10, 20, 30]
        assert batches == expected
        await b.close()


async def test_close_flushes_what_a_lingering_batcher_holds() -> None:
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        return [i for i in items]

    b: Batcher[int, int] = Batcher("t", flush, linger=30.0)
    assert await b.submit(0) == 0  # the first request finds no worker waiting: at once
    pending = asyncio.create_task(b.submit(7))
    for _ in range(5):
        await asyncio.sleep(0)
    assert batches == [[0]]  # 7 lingers
    await asyncio.wait_for(b.close(), 5)  # the linger ends: it is flushed, not lost
    assert await pending == 7
    assert batches == [[0], [7]]


async def test_per_item_errors_only_fail_their_producer() -> None:
    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(i) if i % 2 else i for i in items]

    b: Batcher[int, int] = Batcher("t", flush)
    res = await asyncio.gather(*(b.submit(i) for i in range(6)), return_exceptions=True)
    assert res[0] == 0 and res[2] == 2 and isinstance(res[1], ValueError)
    await b.close()


async def test_byte_cap_splits_batches() -> None:
    seen: list[int] = []

    async def flush(items: Sequence[bytes]) -> list[int | BaseException]:
        seen.append(len(items))
        return [len(i) for i in items]

    b: Batcher[bytes, int] = Batcher("t", flush, max_bytes=1000, size_of=len)
    await asyncio.gather(*(b.submit(b"x" * 300) for _ in range(10)))
    assert max(seen) <= 3
    await b.close()


async def test_submit_many_shares_batches_and_survives_its_callers_cancellation() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        await gate.wait()
        return [ValueError(i) if i == 7 else i * 10 for i in items]

    b: Batcher[int, int] = Batcher("t", flush, max_items=4, parallel=2)
    assert await b.submit_many([]) == []
    many = asyncio.create_task(b.submit_many(list(range(10))))
    while len(batches) < 2:
        await asyncio.sleep(0)
    many.cancel()  # taken items are stored anyway: the caller only stops waiting
    gate.set()
    again = await b.submit_many([1, 7])
    assert again[0] == 10 and isinstance(again[1], ValueError)
    assert sorted(i for batch in batches for i in batch) == sorted([*range(10), 1, 7])
    assert many.cancelled()
    await b.close()


async def test_submit_many_returns_results_in_order_and_close_fails_the_rest() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        started.set()
        await release.wait()
        return [i + 1 for i in items]

    b: Batcher[int, int] = Batcher("t", flush, max_items=3)
    first = asyncio.create_task(b.submit_many([1, 2, 3, 4, 5]))
    await started.wait()
    closing = asyncio.create_task(b.close())
    await asyncio.sleep(0)
    release.set()
    await closing
    assert await first == [2, 3, 4, 5, 6]  # close flushes what is pending
    closed = Batcher[int, int]("t", flush)
    await closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        await closed.submit_many([1])
