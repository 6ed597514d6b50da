"""Rate limits without servers: parsing, the GCRA steps (``aqueue._ratelimit``, which the
Lua script mirrors), the in-memory broker's limiter and the task options."""

from __future__ import annotations

import random
from typing import Any

import pytest

from aqueue import ConfigurationError, Queue, RateLimited, Retry
from aqueue._ratelimit import (
    RateLimit,
    gcra_back_off,
    gcra_request,
    job_key,
    limiter_key,
    parse_rate,
)
from aqueue._runner.admit import task_limits
from aqueue.testing import MemoryBroker

S = 1_000_000  # µs


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [("100/s", 100, 1.0), ("5000/m", 5000, 60.0), ("10/5s", 10, 5.0), ("1/h", 1, 3600.0)],
)
def test_parse(text: str, count: int, period: float) -> None:
    rl = parse_rate(text)
    assert (rl.count, rl.period, rl.burst) == (count, period, 1)
    assert rl.interval_us == round(period * S / count)
    assert rl.tolerance_us == 0


@pytest.mark.parametrize(
    "bad",
    ["", "100", "100/", "/s", "0/s", "-1/s", "1.5/s", "100/sec", "100 / s", " 100/s", "100/S",
     "100/0s", "100/ms", "1e3/s", 100, None, b"100/s"],
)  # fmt: skip
def test_parse_refuses(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        parse_rate(bad)


@pytest.mark.parametrize("burst", [0, -1, 1.5, True, "2"])
def test_parse_refuses_burst(burst: Any) -> None:
    with pytest.raises(ConfigurationError):
        parse_rate("10/s", burst)


def test_keys_stay_in_the_queue_slot_and_apart() -> None:
    assert limiter_key("{p:q}", "t", None) == "{p:q}:rate:t"
    assert limiter_key("{p:q}", "t", "42") == "{p:q}:rate:t#42"
    assert job_key(None, [1], {}) is None
    assert job_key(lambda a, k: k["c"], [], {"c": 42}) == "42"


def _window_max(times: list[int], window: int) -> int:
    s, best, j = sorted(times), 0, 0
    for i in range(len(s)):
        while s[i] - s[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("burst", [1, 3])
@pytest.mark.parametrize("seed", range(5))
def test_admissions_never_exceed_rate_plus_burst(burst: int, seed: int) -> None:
    """Jobs arrive at random, deferred ones come back late by up to 3 intervals: in any
    window of W, at most rate * W + burst admissions; and the backlog drains at the rate."""
    rng = random.Random(seed)
    rl = RateLimit(50, 1.0, burst)
    state: dict[str, int] = {}
    pending = sorted((rng.randrange(0, 2 * S), f"j{i}") for i in range(400))
    admitted: list[int] = []
    asks = 0
    while pending:
        now, job = pending.pop(0)
        asks += 1
        wait = gcra_request(state, job, now, rl.interval_us, rl.tolerance_us)
        if wait == 0:
            admitted.append(now)
        else:
            late = rng.randrange(0, 3 * rl.interval_us)
            pending.append((now + wait + late, job))
            pending.sort()
    assert len(admitted) == 400
    for w in (S // 10, S // 2, S, 3 * S):
        assert _window_max(admitted, w) <= 50 * w // S + burst
    assert max(admitted) - min(admitted) < (400 / 50 + 1.5) * S  # lateness costs little
    assert asks < 400 * 5  # a job bounces a few times at most, even this late


def test_a_reservation_is_kept_for_its_job() -> None:
    st: dict[str, int] = {}
    T = 100_000
    assert gcra_request(st, "a", 0, T, 0) == 0
    assert gcra_request(st, "b", 0, T, 0) == T  # reserved at T
    assert gcra_request(st, "c", 0, T, 0) == 2 * T
    assert gcra_request(st, "b", T // 2, T, 0) == T // 2  # early copy: same reservation
    assert gcra_request(st, "b", T, T, 0) == 0  # back on time: admitted, no new slot
    assert "j:b" not in st
    assert gcra_request(st, "d", T, T, 0) == 2 * T  # after c, not after a second b


def test_late_reservations_are_spaced_again() -> None:
    st: dict[str, int] = {}
    T = 100_000
    gcra_request(st, "a", 0, T, 0)
    for i, job in enumerate("bcd", 1):
        assert gcra_request(st, job, 0, T, 0) == i * T
    # b, c and d all come back together, 5 intervals late: they start spaced (one may
    # catch up an interval), not at once
    now = 8 * T
    waits = [gcra_request(st, job, now, T, 0) for job in "bcd"]
    assert waits[0] == 0
    assert waits[1] <= T and waits[2] > waits[1]


def test_back_off_voids_reservations_inside_it() -> None:
    st: dict[str, int] = {}
    T = 100_000
    gcra_request(st, "a", 0, T, 0)
    assert gcra_request(st, "b", 0, T, 0) == T
    assert gcra_back_off(st, 0, 10 * T, 0) == 10 * T
    # b's reservation (at T) falls in the back-off: it asks again, behind it
    assert gcra_request(st, "b", T, T, 0) == 9 * T
    assert gcra_request(st, "new", T, T, 0) == 10 * T  # behind b's new reservation
    assert gcra_request(st, "b", 10 * T, T, 0) == 0


def test_a_longer_back_off_wins() -> None:
    st: dict[str, int] = {}
    gcra_back_off(st, 0, 5 * S, 0)
    assert gcra_back_off(st, S, S, 0) == 4 * S  # a shorter one later does not shorten it


async def test_memory_broker_defers_atomically() -> None:
    now = [1_000 * S]
    b = MemoryBroker(clock=lambda: now[0])
    await b.dispatch([b"m1", b"m2"], [])
    assert await b.take("r", 10) == [b"m1", b"m2"]
    key = limiter_key(b.keys.tag, "t", None)
    waits = await b.admit("r", [(key, "1", S, 0, b"m1"), (key, "2", S, 0, b"m2")])
    assert waits == [0, S]
    assert await b.working_items("r") == [b"m1"]  # m2 left for the delayed set
    assert await b.promote() == (0, 1000)
    now[0] += S
    assert (await b.promote())[0] == 1
    assert await b.take("r", 10) == [b"m2"]
    assert await b.admit("r", [(key, "2", S, 0, b"m2")]) == [0]
    assert await b.back_off(key, 3 * S, 0) == 3 * S


def test_task_options() -> None:
    q = Queue("rl_unit", redis_url="redis://x", database_url="sqlite+aiosqlite://", init_db=False)

    @q.task(rate_limit="5/m", rate_burst=2, rate_key=lambda a, k: a[0])
    async def limited(x: int) -> None: ...

    @q.task
    async def free() -> None: ...

    assert limited.config.rate_limit == RateLimit(5, 60.0, 2)
    assert set(task_limits(q.tasks)) == {"limited"}  # the others: no limiter call
    with pytest.raises(ConfigurationError):
        q.task(name="bad", rate_limit="5 per minute")(free.fn)
    with pytest.raises(ConfigurationError):
        q.task(name="bad2", rate_key=lambda a, k: 1)(free.fn)  # a key needs a limit
    with pytest.raises(ConfigurationError):
        q.task(name="bad3", rate_limit="1/s", rate_key="customer")(free.fn)  # type: ignore[arg-type]


def test_rate_limited_is_a_retry() -> None:
    e = RateLimited(retry_after=30)
    assert isinstance(e, Retry) and e.retry_after == 30.0 and e.delay == 30.0
    for bad in (-1, "30", None, True):
        with pytest.raises(ConfigurationError):
            RateLimited(retry_after=bad)  # type: ignore[arg-type]


async def test_under_drive_a_deferred_job_waits_for_the_clock() -> None:
    """aqueue.testing: the limiter follows the fake clock; drain() does not wait for a
    deferred job, advance()/drain_all() run it at its time."""
    from aqueue.testing import drive

    q = Queue("rl_drive", redis_url="redis://127.0.0.1:9/0", database_url="sqlite+aiosqlite:///x")
    ran: list[int] = []

    @q.task(rate_limit="1/s")
    async def ping(i: int) -> None:
        ran.append(i)

    async with drive(q) as d:
        await q.enqueue_many(("ping", (i,), {}) for i in range(3))
        await d.drain()
        assert len(ran) == 1
        await d.advance(1.0)
        assert len(ran) == 2
        await d.drain_all()
        assert sorted(ran) == [0, 1, 2]
