"""The Redis dispatch on its own: what ``Broker.dispatch`` leaves in the lists."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aqueue._broker.broker import WAKE, Broker
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
