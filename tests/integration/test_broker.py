"""The Redis dispatch on its own: what ``Broker.dispatch`` leaves in the lists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aqueue._broker.broker import WAKE, Broker
from aqueue._broker.notify import FinishListener
from tests.conftest import REDIS_URL, unique


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    b = Broker(REDIS_URL, unique("p"), "q")
    yield b
    keys = [k async for k in b.redis.scan_iter(match=f"{b.keys.tag}*")]
    if keys:
        await b.redis.delete(*keys)
    await b.close()


async def _lists(b: Broker) -> tuple[list[bytes], list[bytes], list[bytes]]:
    return (
        await b.redis.lrange(b.keys.ready, 0, -1),
        await b.redis.lrange(b.keys.ready_high, 0, -1),
        await b.redis.lrange(b.keys.ready_low, 0, -1),
    )


async def test_joined_push_keeps_every_message_and_lpush_order(broker: Broker) -> None:
    ready = [f'{{"n":{i},"s":"é"}}' for i in range(2500)]  # more than one unpack() of 1000
    high = [b'{"h":1}', b'{"h":2}']
    await broker.dispatch(ready, [], high=high)
    got_ready, got_high, got_low = await _lists(broker)
    # as LPUSH of the messages one by one: the last one pushed is first in the list, and
    # the wake token (after the high ones) is behind the normal ones
    assert got_ready == [m.encode() for m in reversed(ready)] + [WAKE]
    assert got_high == list(reversed(high)) and got_low == []


async def test_messages_that_cannot_be_joined_are_pushed_one_by_one(broker: Broker) -> None:
    odd = ["a\nb", "c", "", "d\n"]  # newlines inside, an empty one: joining would lose them
    mixed: list[str | bytes] = ["x", b"y"]
    await broker.dispatch(odd, [])
    await broker.dispatch([], [], low=mixed)
    await broker.dispatch([""], [])
    got_ready, _, got_low = await _lists(broker)
    assert got_ready == [b"", WAKE, *[m.encode() for m in reversed(odd)]]
    assert got_low == [b"y", b"x"]


async def test_delayed_messages_go_to_the_delayed_set(broker: Broker) -> None:
    await broker.dispatch(["now"], [(123, "later")])
    assert await broker.redis.lrange(broker.keys.ready, 0, -1) == [b"now"]
    assert await broker.redis.zrange(broker.keys.delayed, 0, -1, withscores=True) == [
        (b"later", 123.0)
    ]


async def test_a_push_reports_the_epoch_of_the_dataset_it_went_into(broker: Broker) -> None:
    # no epoch yet (a Redis that restarted empty): the push creates it, atomically
    first = await broker.dispatch(["a"], [])
    assert first == await broker.epoch()
    assert await broker.dispatch(["b"], [(123, "later")]) == first  # the pipeline path
    assert await broker.dispatch_suspects([b"s"]) == first
    await broker.redis.delete(broker.keys.epoch, broker.keys.ready)  # data lost
    second = await broker.dispatch([], [(5, "x")])
    assert second != first and second == await broker.epoch()


async def test_an_expired_holder_cannot_release_the_next_holders_lock(broker: Broker) -> None:
    key = broker.keys.lock_reclaim
    token_a = await broker.acquire_lock(key, ttl_ms=50)
    assert token_a is not None
    assert await broker.acquire_lock(key, ttl_ms=50) is None  # held: nobody else gets it
    # A's lock expires (wait on Redis itself, not a fixed sleep), then B takes it
    deadline = asyncio.get_running_loop().time() + 5.0
    while await broker.redis.exists(key):
        assert asyncio.get_running_loop().time() < deadline, "lock never expired"
        await asyncio.sleep(0.01)
    token_b = await broker.acquire_lock(key, ttl_ms=60_000)
    assert token_b is not None and token_b != token_a
    # A, late, releases what it thinks is its lock: B's stays in place
    assert await broker.release_lock(key, token_a) is False
    assert await broker.redis.get(key) == token_b.encode()
    assert await broker.acquire_lock(key, ttl_ms=60_000) is None
    # B's own release deletes it
    assert await broker.release_lock(key, token_b) is True
    assert await broker.redis.exists(key) == 0


async def test_a_lock_that_changes_hands_during_the_release_is_kept(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worst timing for a read-then-delete release: A's lock expires and B takes it
    # right after A's read. Any separate read of the key hands the lock over to B; an
    # atomic compare-and-delete leaves no such moment.
    key = broker.keys.lock_sweep
    token_a = await broker.acquire_lock(key, ttl_ms=60_000)
    assert token_a is not None
    other = Broker(REDIS_URL, "unused", "q")
    execute = broker.redis.execute_command
    handed_over = []

    async def handover_after_read(*args: Any, **kwargs: Any) -> Any:
        res = await execute(*args, **kwargs)
        if args[0] == "GET" and args[1] == key:
            await other.redis.set(key, "token-of-b", px=60_000)
            handed_over.append(True)
        return res

    monkeypatch.setattr(broker.redis, "execute_command", handover_after_read)
    try:
        await broker.release_lock(key, token_a)
        # B's lock, if B got it during the release, is still there; else A's is gone
        assert await other.redis.get(key) == (b"token-of-b" if handed_over else None)
    finally:
        await other.close()


async def test_closing_the_finish_listener_stops_it_at_once(broker: Broker) -> None:
    """The listener waits on a pub/sub read with a timeout of a second; closing it must
    not wait for that read (a queue that waited for a result closes at once)."""
    listener = FinishListener(broker.redis, broker.keys.finished)
    ev = listener.watch("some-job")
    task = listener._task
    assert task is not None
    async with asyncio.timeout(10):  # published until heard: subscribed and reading
        while not ev.is_set():
            await broker.redis.publish(broker.keys.finished, b"some-job")
            await asyncio.sleep(0.02)
    await listener.close()
    assert task.done()
    assert task.cancelled()  # stopped, not left to see the flag a read later
