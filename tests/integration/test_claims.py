"""The claim in SQL: the batch form and the open form (the claim statement's row locks
hold the jobs while its commit is flushed), on MariaDB and SQLite."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aqueue import Job, JobStatus, Retry, Runner, RunnerConfig, current_job
from aqueue._ids import now_us
from aqueue._message import encode_message
from aqueue._models import JobRecord
from aqueue._store.store import Store
from aqueue._store.values import Claim, Finish

from ..conftest import QueueFactory

LEASE = 60_000_000


async def _one_job(make_queue: QueueFactory) -> tuple[Store, Job]:
    q = make_queue()

    @q.task
    async def t(n: int) -> None:
        return None

    job = await t.enqueue(1)
    return (await q._backend()).store, job


def _claim(job_ids: list[str], owner: str, token: str, *, attempts: int = 0) -> Claim:
    now = now_us()
    return Claim([(i, 0, attempts) for i in job_ids], owner, token, now + LEASE, now)


async def _statements_running(store: Store, marker: str) -> int:
    """Statements of other connections containing ``marker`` now executing (PostgreSQL
    shows a statement's placeholders, not its values: there, statements waiting on a row
    lock)."""
    if store.url.get_backend_name() == "postgresql":
        rows = await store.db.fetch(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND state = 'active' AND wait_event_type = 'Lock' AND query LIKE $1",
            (f"%UPDATE%{store.table_name}%",),
        )
        return int(rows[0][0])
    rows = await store.db.fetch(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID != CONNECTION_ID() "
        "AND COMMAND = 'Query' AND INFO LIKE %s",
        (f"%{marker}%",),
    )
    return int(rows[0][0])


async def test_open_claim_holds_its_jobs_until_committed(
    make_queue: QueueFactory, backend: str
) -> None:
    store, job = await _one_job(make_queue)
    won, commit = await store.claim_open(_claim([job.id], "r1", "tok1"))
    assert won == {job.id}
    if backend == "sqlite":
        assert commit is None  # committed at once: SQLite's writer lock is not held
    else:
        assert commit is not None
        rival = None
        try:
            assert (await job.info()).status is JobStatus.TODO  # not visible before commit
            # A rival claim waits on the row lock, then finds the job taken.
            rival = asyncio.ensure_future(store.claim(_claim([job.id], "r2", "tok2")))
            deadline = time.monotonic() + 10
            while await _statements_running(store, "'tok2'") == 0:
                assert not rival.done(), rival
                assert time.monotonic() < deadline, "the rival claim never reached the server"
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # room for the rival to finish, which it must not
            assert not rival.done()
            assert await _statements_running(store, "'tok2'") == 1  # waiting on the row
        finally:
            await commit()  # (else the table could not be dropped after a failure)
        assert await rival == set()
    info = await job.info()
    assert (info.status, info.lease_owner, info.lease_token, info.attempts) == (
        JobStatus.RUNNING,
        "r1",
        "tok1",
        1,
    )
    # Taken again under the same token (its commit failed, outcome unknown): still won,
    # and nothing changes; any other token loses.
    assert await store.claim(_claim([job.id], "r1", "tok1"), again=True) == {job.id}
    assert await store.claim(_claim([job.id], "r3", "tok3")) == set()
    assert (await job.info()).attempts == 1


async def test_open_claim_lost_commits_nothing(make_queue: QueueFactory) -> None:
    store, job = await _one_job(make_queue)
    assert await store.claim(_claim([job.id], "r1", "tok1")) == {job.id}
    won, commit = await store.claim_open(_claim([job.id, "no-such-job"], "r2", "tok2"))
    assert (won, commit) == (set(), None)
    assert (await job.info()).lease_token == "tok1"


async def test_batch_renew_and_finish_fence_each_job_by_its_own_token(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()

    @q.task
    async def t(n: int) -> None:
        return None

    a, b, c, d = [(await t.enqueue(i)).id for i in range(4)]
    store = (await q._backend()).store
    assert await store.claim(_claim([a, b], "r1", "T1")) == {a, b}
    assert await store.claim(_claim([c, d], "r1", "T2")) == {c, d}
    # b was taken over meanwhile (another run of it, under another token)
    params: list[object] = []
    token, where = store.sql.bind(params, "T3"), store.sql.bind(params, b)
    await store.db.execute(
        f"UPDATE {store.sql.t} SET lease_token = {token} WHERE id = {where}", params
    )
    # d is named with the token of the other batch: its own is T2
    asked = [(a, "T1"), (b, "T1"), (c, "T2"), (d, "T1")]
    assert await store.renew(asked, now_us() + LEASE) == {b, d}
    finished = [Finish(i, tok, JobStatus.DONE) for i, tok in asked]
    assert await store.finish(finished, now_us()) == {a, c}
    statuses = {i: (await q.job(i).info()).status for i in (a, b, c, d)}
    assert statuses == {
        a: JobStatus.DONE,
        b: JobStatus.RUNNING,
        c: JobStatus.DONE,
        d: JobStatus.RUNNING,
    }


async def test_a_copy_older_than_the_last_attempt_cannot_claim(make_queue: QueueFactory) -> None:
    store, job = await _one_job(make_queue)
    assert await store.claim(_claim([job.id], "r1", "tok1")) == {job.id}
    retry = Finish(job.id, "tok1", JobStatus.TODO, run_at=now_us())
    assert await store.finish([retry], now_us()) == {job.id}
    # The job's first message (0 attempts made) is stale now: the retry's carries 1.
    assert await store.claim(_claim([job.id], "r2", "tok2")) == set()
    assert (await store.claim_states([job.id]))[job.id].attempts == 1
    assert await store.claim(_claim([job.id], "r3", "tok3", attempts=1)) == {job.id}
    info = await job.info()
    assert (info.lease_token, info.attempts) == ("tok3", 2)


def _message(r: JobRecord) -> str:
    """The message the sweeper sends for a stored row."""
    return encode_message(r.id, r.task, r.payload, r.attempts, r.max_attempts, r.priority, r.stalls)


async def _wait_for(what: str, cond: Any) -> None:
    deadline = time.monotonic() + 20
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_stale_copy_never_takes_a_retry_turn(make_queue: QueueFactory) -> None:
    """A duplicate of a job's first message (the sweeper re-sent it, say) that arrives
    once the job is waiting for its retry is dropped: the handler never sees attempt 1
    twice, and the retry runs as attempt 2."""
    q = make_queue()
    seen: list[int] = []

    @q.task(retries=3)
    async def flaky() -> str:
        seen.append(current_job().attempt)
        if len(seen) == 1:
            raise Retry(delay=3600)
        return "ok"

    job = await flaky.enqueue()
    be = await q._backend()
    first = await be.store.get_job(job.id)
    assert first is not None
    runner = Runner(q, RunnerConfig(concurrency=4, handle_signals=False))
    task = asyncio.ensure_future(runner.run())
    try:

        async def retry_recorded() -> bool:
            info = await job.info()
            return info.status is JobStatus.TODO and info.attempts == 1

        await _wait_for("the retry to be recorded", retry_recorded)
        # The retry is due now, and the stale first message reaches the ready list.
        params: list[object] = []
        due, where = be.store.sql.bind(params, now_us()), be.store.sql.bind(params, job.id)
        await be.store.db.execute(
            f"UPDATE {be.store.sql.t} SET run_at = {due} WHERE id = {where}", params
        )
        lost = runner.stats.claims_lost
        await be.broker.dispatch([_message(first)], [])

        async def stale_handled() -> bool:
            assert seen == [1], f"the stale copy ran: attempts seen {seen}"
            return runner.stats.claims_lost > lost

        await _wait_for("the stale copy's claim to lose", stale_handled)
        assert (await job.info()).status is JobStatus.TODO
        current = await be.store.get_job(job.id)
        assert current is not None
        await be.broker.dispatch([_message(current)], [])  # as the sweeper would
        assert await job.result(timeout=20) == "ok"
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
    assert seen == [1, 2]
    assert (await job.info()).attempts == 2
