"""every(): supervised periodic upkeep on an injected sleep."""

from __future__ import annotations

import asyncio

import pytest

from aqueue._runner.every import Upkeep, every


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


async def test_runs_every_period_until_stopping() -> None:
    clock, calls = Clock(), []

    async def fn() -> None:
        calls.append(clock.now)

    up = await every("tick", 2.0, fn, stopping=lambda: len(calls) >= 3, sleep=clock.sleep)
    assert calls == [2.0, 4.0, 6.0]
    assert up.runs == 3 and up.failures == 0


async def test_fn_chooses_the_next_delay() -> None:
    clock, n = Clock(), [0]

    async def beat() -> float:  # a failing beat retried after 0.1 s, doubling
        n[0] += 1
        return 0.1 * 2 ** (n[0] - 1)

    await every("heartbeat", 1.0, beat, stopping=lambda: n[0] >= 4, sleep=clock.sleep)
    assert clock.sleeps == pytest.approx([1.0, 0.1, 0.2, 0.4])


async def test_handled_errors_are_logged_counted_and_pick_the_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, n = Clock(), [0]

    async def fn() -> None:
        n[0] += 1
        if n[0] == 1:
            raise ConnectionError("down")

    up = await every(
        "promote",
        0.5,
        fn,
        stopping=lambda: n[0] >= 2,
        handled=(ConnectionError,),
        on_error=lambda exc: 1.0,
        sleep=clock.sleep,
    )
    assert up.failures == 1 and up.runs == 2
    assert clock.sleeps == [0.5, 1.0]
    assert "promote failed" in caplog.text


async def test_other_errors_propagate() -> None:
    async def fn() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError):
        await every("x", 0.0, fn, stopping=lambda: False, handled=(ConnectionError,))


async def test_cancellation_is_never_swallowed() -> None:
    started = asyncio.Event()

    async def fn() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(every("x", 0.0, fn, stopping=lambda: False, handled=(Exception,)))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_first_run_at_once_and_no_run_once_stopping() -> None:
    clock, stop, calls = Clock(), [False], []

    async def fn() -> None:
        calls.append(clock.now)
        stop[0] = True

    up = Upkeep("sweep")
    await every("sweep", 5.0, fn, stopping=lambda: stop[0], first=0.0, sleep=clock.sleep, upkeep=up)
    assert calls == [0.0] and up.runs == 1
    await every("sweep", 5.0, fn, stopping=lambda: stop[0], sleep=clock.sleep)
    assert calls == [0.0]
