"""A chord under faults: its group's runner is killed with SIGKILL mid-way, or Redis is
FLUSHALLed mid-way; the callback still runs exactly once, with every result (the group's
jobs are released and re-sent from SQL, the callback's release is part of the finish of
the group's last job)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import aqueue
from aqueue import JobStatus

from .harness import ChaosEnv, RedisServer, drain, on_both_databases, wait_for
from .test_chaos_core import CONCURRENCY, assert_clean, metric, stop_all, wait_busy

MakeEnv = Callable[..., Awaitable[ChaosEnv]]
N = 600


async def _enqueue_chord(env: ChaosEnv) -> tuple[list[str], str]:
    """A chord of ``N`` ``work`` jobs and a ``collect`` callback, from the test process
    (its queue only enqueues: the tasks here are the runners' names)."""

    @env.queue.task(name="work")
    async def work(n: int, sleep_s: float = 0.05) -> int:
        return n

    @env.queue.task(name="collect")
    async def collect(results: list[int]) -> int:
        return sum(results)

    members = aqueue.group(*(work.s(i, 0.05) for i in range(N)))
    callback = await aqueue.chord(members, collect.s()).enqueue()
    rows = await env.sql("SELECT id FROM {t} WHERE task = 'work'")
    return [r[0] for r in rows], callback.id


async def _callback_once(env: ChaosEnv, callback: str, procs: Any) -> None:
    async def called() -> bool:
        rows = await env.sql("SELECT status FROM {t} WHERE id = :i", i=callback)
        return rows[0][0] == "done"

    await wait_for(called, 60, "the chord's callback done", procs=procs)
    rows = await env.sql("SELECT result, attempts FROM {t} WHERE id = :i", i=callback)
    assert json.loads(rows[0][0]) == sum(range(N))
    starts = [e for e in env.checker.executions() if e.job == callback]
    assert len(starts) == 1, starts
    assert rows[0][1] == 1


@pytest.mark.timeout(120)
@on_both_databases
async def test_chord_callback_once_when_a_runner_is_killed(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    ids, callback = await _enqueue_chord(env)
    steady = env.spawn("-c", str(CONCURRENCY), name="steady")
    victim = env.spawn("-c", str(CONCURRENCY), name="victim")
    rid = await wait_busy(env, victim, CONCURRENCY // 2, 30)
    victim.kill9()
    held = await env.running_of(rid)
    metric("chord: group jobs held by the killed runner", len(held))
    assert held
    waiting = await env.sql("SELECT status FROM {t} WHERE id = :i", i=callback)
    assert waiting[0][0] == JobStatus.WAITING.value  # killed before the callback could run
    second = env.spawn("-c", str(CONCURRENCY), name="second")
    await _callback_once(env, callback, (steady, second))
    await drain(env, N + 1, 30, procs=(steady, second))
    stop_all(steady, second)
    v = await env.verdict([*ids, callback])
    metric("chord kill -9: verdict", v.report)
    assert_clean(v, reruns_allowed=held)


@pytest.mark.timeout(120)
async def test_chord_callback_once_after_redis_flushall(
    chaos: MakeEnv, own_redis: RedisServer
) -> None:
    env = await chaos(own_redis.url)
    ids, callback = await _enqueue_chord(env)
    a = env.spawn("-c", str(CONCURRENCY), name="a")
    b = env.spawn("-c", str(CONCURRENCY), name="b")

    async def some_done() -> bool:
        return (await env.counts()).get("done", 0) >= N // 3

    await wait_for(some_done, 30, f"{N // 3} jobs done", procs=(a, b))
    r = own_redis.client()
    try:
        r.flushall()
    finally:
        r.close()
    await _callback_once(env, callback, (a, b))
    await drain(env, N + 1, 30, procs=(a, b))
    stop_all(a, b)
    assert sum("Redis lost its data" in p.log() for p in (a, b)) >= 1
    v = await env.verdict([*ids, callback])
    metric("chord flushall: verdict", v.report)
    assert_clean(v)
    assert not v.duplicated, v.report
