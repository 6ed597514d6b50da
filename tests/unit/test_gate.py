"""The runner's FIFO gate (handler slots, per-task limits)."""

from __future__ import annotations

import asyncio

from aqueue._runner.gate import Gate


async def test_gate_limits_and_serves_waiters_in_order() -> None:
    gate = Gate(2)
    inside: list[int] = []
    order: list[int] = []
    release = asyncio.Event()

    async def worker(i: int) -> None:
        async with gate:
            order.append(i)
            inside.append(i)
            assert len(inside) <= 2
            await release.wait()
            inside.remove(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(6)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == [0, 1]
    release.set()
    await asyncio.gather(*tasks)
    assert order == list(range(6))


async def test_a_cancelled_waiter_does_not_lose_a_permit() -> None:
    gate = Gate(1)
    await gate.__aenter__()
    waiter = asyncio.create_task(gate.__aenter__())
    late = asyncio.create_task(gate.__aenter__())
    await asyncio.sleep(0)
    waiter.cancel()  # cancelled while waiting: skipped
    await asyncio.sleep(0)
    await gate.__aexit__(None, None, None)
    await asyncio.wait_for(late, 1)  # the permit went to the next live waiter
    await gate.__aexit__(None, None, None)
    async with gate:  # and it is free again
        pass


async def test_a_waiter_cancelled_as_it_is_handed_the_permit_passes_it_on() -> None:
    gate = Gate(1)
    await gate.__aenter__()
    first = asyncio.create_task(gate.__aenter__())
    second = asyncio.create_task(gate.__aenter__())
    await asyncio.sleep(0)
    await gate.__aexit__(None, None, None)  # hands the permit to `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)
