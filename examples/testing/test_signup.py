"""The signup app's tests, written as a user of aqueue writes them: the real handlers run
through the real runner code on aqueue's in-memory backend (no Redis, no database), under
a clock the test moves. ``aqueue_drive`` and ``aqueue_clock`` come from aqueue's pytest
plugin; nothing is configured for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import signup

from aqueue import JobStatus
from aqueue.testing import FakeClock, drive

pytestmark = pytest.mark.asyncio  # for pytest-asyncio's strict mode (auto needs none)


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    yield
    signup.outbox.clear()
    signup.confirmed.clear()
    signup.signups.clear()
    signup.digests.clear()
    signup.mail_server["failures_left"] = 0


async def test_welcome_mail_is_sent(aqueue_drive) -> None:
    q = await aqueue_drive(signup.queue)
    job = await signup.send_welcome.enqueue(7)
    await q.drain()
    assert signup.outbox == ["welcome:7"]
    assert (await job.info()).status is JobStatus.DONE
    assert await job.result(timeout=1) == 1


async def test_welcome_mail_is_retried_while_the_mail_server_is_down(aqueue_drive) -> None:
    signup.mail_server["failures_left"] = 2
    q = await aqueue_drive(signup.queue)
    job = await signup.send_welcome.enqueue(7)
    await q.drain()
    info = await job.info()
    assert (info.status, info.attempts) == (JobStatus.TODO, 1)  # waits for its retry
    await q.advance(29)
    assert (await job.info()).attempts == 1  # not yet: the first retry is after 30 s
    await q.advance(1)
    assert (await job.info()).attempts == 2
    await q.advance(120)
    assert (await job.info()).status is JobStatus.DONE
    assert await job.result(timeout=1) == 3
    assert signup.outbox == ["welcome:7"]


async def test_a_welcome_mail_fails_after_its_retries(aqueue_drive) -> None:
    signup.mail_server["failures_left"] = 10
    q = await aqueue_drive(signup.queue)
    job = await signup.send_welcome.enqueue(7)
    await q.drain_all()  # moves the clock to each retry in turn
    info = await job.info()
    assert (info.status, info.attempts) == (JobStatus.FAILED, 3)
    assert "MailServerDown" in (info.error or "")


async def test_reminder_is_sent_a_day_later_unless_confirmed(aqueue_drive) -> None:
    q = await aqueue_drive(signup.queue)
    await signup.sign_up(1)
    await signup.sign_up(2)
    await q.drain()
    assert sorted(signup.outbox) == ["welcome:1", "welcome:2"]
    signup.confirmed.add(2)
    await q.advance(86400 - 1)
    assert len(signup.outbox) == 2
    await q.advance(1)
    assert sorted(signup.outbox) == ["reminder:1", "welcome:1", "welcome:2"]
    assert q.jobs("todo") == []


async def test_digest_runs_every_hour(aqueue_drive, aqueue_clock: FakeClock) -> None:
    aqueue_clock.set((aqueue_clock.now() // 3_600_000_000 + 1) * 3_600_000_000 - 1_000_000)
    q = await aqueue_drive(signup.queue)
    await signup.sign_up(1)
    await q.drain()
    assert signup.digests == []
    await q.advance(1)  # the hour strikes
    assert signup.digests == [1]
    await signup.sign_up(2)
    await q.advance(2 * 3600)  # two more ticks
    assert signup.digests == [1, 2, 2]


async def test_without_the_fixture() -> None:
    async with drive(signup.queue) as q:
        await signup.sign_up(5)
        await q.drain()
        counts = await signup.queue.counts()
        assert (counts[JobStatus.DONE], counts[JobStatus.TODO]) == (1, 1)  # welcome, remind
        await q.advance(86400)
        assert signup.outbox == ["welcome:5", "reminder:5"]
        assert len(signup.digests) == 24  # a day of hourly digests
        assert (await signup.queue.counts())[JobStatus.TODO] == 0
