"""The ``MessageBroker`` contract: one suite over the Redis broker and the in-memory one
(``broker`` fixture), so the memory broker used by ``aqueue.testing`` is held to what
the runner relies on of Redis."""

from __future__ import annotations

import asyncio

from aqueue._broker.base import FinishWaiters, MessageBroker
from aqueue._ids import now_us
from aqueue._message import encode_message


def msg(n: int, priority: int = 0) -> bytes:
    return encode_message(f"job-{n}", "t", "[]", 0, 3, priority).encode()


async def test_ready_messages_come_out_first_in_first_out(broker: MessageBroker) -> None:
    epoch = await broker.dispatch([msg(1), msg(2)], [])
    await broker.dispatch([msg(3).decode()], [])  # str in, bytes out
    assert await broker.epoch() == epoch
    assert await broker.lengths() == (3, 0)
    assert await broker.take("r1", 2) == [msg(1), msg(2)]
    assert await broker.take("r1", 5) == [msg(3)]
    assert await broker.take("r1", 5) == []
    assert sorted(await broker.working_items("r1")) == [msg(1), msg(2), msg(3)]


async def test_high_before_normal_before_low_and_no_wake_token(broker: MessageBroker) -> None:
    await broker.dispatch([msg(1)], [], high=[msg(2, 1)], low=[msg(3, -1)])
    assert await broker.take("r1", 10) == [msg(2, 1), msg(1), msg(3, -1)]
    assert await broker.lengths() == (0, 0)


async def test_wait_one_blocks_until_a_message_arrives(broker: MessageBroker) -> None:
    assert await broker.wait_one("r1", 0.05) is None
    waiting = asyncio.ensure_future(broker.wait_one("r1", 5.0))
    await asyncio.sleep(0.05)  # let it block first: the push must wake it
    await broker.dispatch([msg(1)], [])
    assert await asyncio.wait_for(waiting, 5) == msg(1)
    assert await broker.working_items("r1") == [msg(1)]
    # a high message wakes a waiter with b"": it takes by priority then
    await broker.dispatch([], [], high=[msg(2, 1)])
    assert await broker.wait_one("r1", 1.0) == b""
    assert await broker.take("r1", 10) == [msg(2, 1)]


async def test_settle_removes_deliveries_and_sends_follow_ups(broker: MessageBroker) -> None:
    await broker.dispatch([msg(1), msg(2), msg(3)], [])
    await broker.dispatch([msg(4)], [])
    taken = await broker.take("r1", 3)
    removed = await broker.settle(
        "r1",
        [taken[0], b"not-there"],
        ready=[msg(9)],
        delayed=[(now_us() // 1000 + 60_000, msg(8))],
    )
    assert removed == 1
    assert sorted(await broker.working_items("r1")) == sorted(taken[1:])
    assert await broker.lengths() == (2, 1)
    # a settled follow-up goes to the consuming end: before the waiting msg(4)
    assert await broker.take("r1", 1) == [msg(9)]


async def test_promote_moves_due_messages_to_their_level(broker: MessageBroker) -> None:
    now_ms = now_us() // 1000
    await broker.dispatch(
        [],
        [(now_ms - 10, msg(1)), (now_ms - 5, msg(2, 1)), (now_ms + 60_000, msg(3))],
    )
    assert await broker.lengths() == (0, 3)
    moved, next_ms = await broker.promote()
    assert moved == 2
    assert 50_000 < next_ms <= 60_000
    assert await broker.take("r1", 10) == [msg(2, 1), msg(1)]
    assert await broker.lengths() == (0, 1)
    await broker.settle("r1", [], delayed=[(now_ms - 1, msg(4))])
    assert (await broker.promote(limit=1))[0] == 1
    await broker.purge()
    assert await broker.promote() == (0, -1)


async def test_requeue_all_returns_the_working_list_oldest_first(broker: MessageBroker) -> None:
    await broker.dispatch([msg(1), msg(2), msg(3)], [])
    await broker.take("r1", 3)
    await broker.dispatch([msg(4)], [])
    assert await broker.requeue_all("r1") == 3
    assert await broker.working_items("r1") == []
    assert await broker.take("r2", 10) == [msg(1), msg(2), msg(3), msg(4)]


async def test_suspect_lanes(broker: MessageBroker) -> None:
    epoch = await broker.epoch()
    assert await broker.dispatch_suspects([msg(1), msg(2)], [msg(3)]) == epoch
    assert await broker.suspects_waiting() == 3
    assert await broker.lengths() == (3, 0)
    assert await broker.take("r1", 10) == []  # never taken with the ready lists
    assert await broker.take_suspect("r1", alone=True) == msg(3)
    assert await broker.take_suspect("r1", alone=True) is None
    assert await broker.take_suspect("r1") == msg(1)
    assert await broker.take_suspect("r1") == msg(2)
    assert await broker.take_suspect("r1") is None
    assert sorted(await broker.working_items("r1")) == [msg(1), msg(2), msg(3)]


async def test_runners_heartbeats_and_stats(broker: MessageBroker) -> None:
    assert await broker.runners() == {}
    await broker.heartbeat("r1", 60_000)
    await broker.heartbeat("r2", 60_000)
    await broker.publish_stats("r1", {"executed": 3, "done": 2}, 60_000)
    assert await broker.runners() == {"r1": True, "r2": True}
    assert await broker.runner_stats() == {"r1": {"executed": 3, "done": 2}}
    await broker.forget_runner("r2")
    assert await broker.runners() == {"r1": True}


async def test_locks_are_released_only_by_their_holder(broker: MessageBroker) -> None:
    key = broker.keys.lock_sweep
    token = await broker.acquire_lock(key, 60_000)
    assert token is not None
    assert await broker.acquire_lock(key, 60_000) is None
    assert not await broker.release_lock(key, "not-mine")
    assert await broker.release_lock(key, token)
    assert not await broker.release_lock(key, token)
    assert await broker.acquire_lock(broker.keys.lock_reclaim, 60_000) is not None


async def test_purge_forgets_the_dataset(broker: MessageBroker) -> None:
    epoch = await broker.dispatch([msg(1)], [(now_us() // 1000 + 60_000, msg(2))])
    await broker.heartbeat("r1", 60_000)
    await broker.take("r1", 1)
    await broker.purge()
    assert await broker.lengths() == (0, 0)
    assert await broker.working_items("r1") == []
    assert await broker.runners() == {}
    assert await broker.epoch() != epoch  # a new dataset


async def test_finish_notifications_wake_result_waiters(
    broker_pair: tuple[MessageBroker, FinishWaiters],
) -> None:
    broker, waiters = broker_pair
    ev = waiters.watch("job-1")
    other = waiters.watch("job-2")
    # a hint, not a queue: published again until the waiter is listening
    async with asyncio.timeout(10):
        while not ev.is_set():
            await broker.settle("r1", [], finished=["job-1"])
            try:
                async with asyncio.timeout(0.2):
                    await ev.wait()
            except TimeoutError:
                continue
    assert not other.is_set()
    ev.clear()
    async with asyncio.timeout(10):
        while not ev.is_set():
            await broker.notify_finished(["job-1"])
            try:
                async with asyncio.timeout(0.2):
                    await ev.wait()
            except TimeoutError:
                continue
    waiters.unwatch("job-1", ev)
    waiters.unwatch("job-2", other)


async def test_maxmemory_policy_is_readable(broker: MessageBroker) -> None:
    policy = await broker.maxmemory_policy()
    assert policy is None or isinstance(policy, str)
