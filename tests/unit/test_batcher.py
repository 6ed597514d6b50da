from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
