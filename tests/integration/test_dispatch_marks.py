"""Dispatch marks: an ``enqueue_many`` batch is marked by its id range, and the range
never reaches a row outside the batch, on MariaDB and SQLite."""

from __future__ import annotations

from typing import Any

import pytest

from aqueue import ConfigurationError, JobStatus, Queue, Retry, Runner, RunnerConfig
from aqueue._ids import new_job_id, new_job_ids, now_us
from aqueue._models import IdRun, NewJob, id_runs
from aqueue._store.store import Store

from ..conftest import QueueFactory


async def _marks(store: Store) -> dict[str, tuple[int | None, str | None]]:
    rows = await store.db.fetch(f"SELECT id, dispatched_at, dispatch_epoch FROM {store.sql.t}")
    return {r[0]: (r[1], r[2]) for r in rows}


async def test_enqueue_many_is_marked_dispatched_by_range(make_queue: QueueFactory) -> None:
    q = make_queue()

    @q.task
    async def t(n: int) -> None:
        return None

    jobs = await q.enqueue_many([(t, (i,), {}) for i in range(300)])
    lone = await t.enqueue(0)
    mine = await q.options(job_id="mine-1").enqueue(t, 1)
    be = await q._backend()
    epoch = await be.broker.epoch()
    await be.marker.close()  # flushes the pending marks at once
    marks = await _marks(be.store)
    assert len(marks) == 302
    assert all(at is not None and ep == epoch for at, ep in marks.values()), marks
    assert {j.id for j in jobs} | {lone.id, mine.id} == set(marks)


async def test_a_range_mark_reaches_only_its_batch(make_queue: QueueFactory) -> None:
    q = make_queue()
    store = (await q._backend()).store
    now = now_us()
    ids = new_job_ids(300)
    batch = [NewJob(i, "q", "t", "{}", 0, 1, now, now) for i in ids]
    # Strings that sort inside the batch's range: an explicit job id (other instant) and
    # a batch id of the same range created at another instant.
    inside = ids[0][:32] + "000g"
    assert ids[0] < inside < ids[-1]
    others = [
        NewJob(inside, "q", "t", "{}", 0, 1, now, now + 1, None, True),
        NewJob(ids[0][:32] + "ffff", "q", "t", "{}", 0, 1, now, now),
    ]
    assert await store.insert_jobs([*batch, *others], now) == [*ids, inside, others[1].id]
    singles, runs = id_runs(batch)
    assert singles == [] and runs == [IdRun(ids[0], ids[-1], now)]
    await store.mark_dispatched([], "e1", now, [(runs[0], now)], unmarked_only=True)
    marks = await _marks(store)
    assert all(marks[i] == (now, "e1") for i in ids)
    assert marks[inside] == (None, None)  # inside the range, not of the batch
    assert marks[others[1].id] == (None, None)  # same prefix and instant, outside it

    # unmarked_only leaves a row that already carries a mark (a claim's) alone ...
    await store.mark_dispatched([(inside, now), (ids[5], now)], "e2", now + 5, unmarked_only=True)
    marks = await _marks(store)
    assert marks[inside] == (now + 5, "e2") and marks[ids[5]] == (now, "e1")
    # ... and the sweeper's marks overwrite (a message pushed again under a new epoch).
    await store.mark_dispatched([(ids[5], now)], "e3", now + 9, [(runs[0], now)])
    marks = await _marks(store)
    assert all(marks[i] == (now + 9, "e3") for i in ids)


async def test_a_late_mark_never_covers_a_later_write(make_queue: QueueFactory) -> None:
    """A job pushed, then written again (say retried by a runner whose push of the
    follow-up failed: ``dispatched_at`` reset) before the first push's mark lands: the
    mark must not make the row look dispatched, or no sweeper would ever send it."""
    q = make_queue()
    store = (await q._backend()).store
    now = now_us()
    ids = new_job_ids(3)
    lone = NewJob(new_job_id(), "q", "t", "{}", 0, 1, now, now)
    batch = [NewJob(i, "q", "t", "{}", 0, 1, now, now) for i in ids]
    await store.insert_jobs([lone, *batch], now)
    retried = (lone.id, ids[1])
    params: list[object] = []
    at, among = store.sql.bind(params, now + 1), store.sql.ids_in(params, retried)
    await store.db.execute(
        f"UPDATE {store.sql.t} SET dispatched_at = NULL, updated_at = {at} WHERE {among}", params
    )
    _, runs = id_runs(batch)
    await store.mark_dispatched(
        [(lone.id, now)], "e1", now + 2, [(runs[0], now)], unmarked_only=True
    )
    marks = await _marks(store)
    assert marks[ids[0]] == marks[ids[2]] == (now + 2, "e1")
    assert marks[lone.id] == marks[ids[1]] == (None, None)
    # The sweeper's marks are fenced the same way, by the updated_at it read.
    await store.mark_dispatched([(lone.id, now), (ids[1], now + 1)], "e2", now + 3)
    marks = await _marks(store)
    assert marks[lone.id] == (None, None) and marks[ids[1]] == (now + 3, "e2")


async def test_a_mark_of_many_single_jobs_writes_only_the_unmarked_of_its_writes(
    make_queue: QueueFactory,
) -> None:
    """A trickle's mark (more single jobs than ``PRE_READ``, each written at its own
    time) looks them up first: one already marked (claimed meanwhile) keeps its mark, one
    written again since keeps none, the others get this one; with one statement more."""
    from aqueue._store.store import PRE_READ

    q = make_queue()
    store = (await q._backend()).store
    now = now_us()
    jobs = [NewJob(new_job_id(), "q", "t", "{}", 0, 1, now + i, now + i) for i in range(40)]
    for i, j in enumerate(jobs):  # one insert each: forty write times
        await store.insert_jobs([j], now + i)
    claimed, rewritten = jobs[3].id, jobs[7].id
    params: list[object] = []
    b = store.sql.bind
    await store.db.execute(
        f"UPDATE {store.sql.t} SET dispatched_at = {b(params, now)}, "
        f"dispatch_epoch = {b(params, 'claim')} WHERE {store.sql.ids_in(params, [claimed])}",
        params,
    )
    params = []
    await store.db.execute(
        f"UPDATE {store.sql.t} SET updated_at = {b(params, now + 100)} "
        f"WHERE {store.sql.ids_in(params, [rewritten])}",
        params,
    )
    statements: list[tuple[str, list[Any]]] = []
    fetch, execute = store.db.fetch, store.db.execute

    async def counting_fetch(sql: str, params: Any = ()) -> Any:
        statements.append((sql, list(params)))
        return await fetch(sql, params)

    async def counting_execute(sql: str, params: Any = ()) -> Any:
        statements.append((sql, list(params)))
        return await execute(sql, params)

    store.db.fetch, store.db.execute = counting_fetch, counting_execute  # type: ignore[method-assign]
    try:
        marks_in = [(j.id, now + i) for i, j in enumerate(jobs)]
        assert len(marks_in) > PRE_READ
        await store.mark_dispatched(marks_in, "e1", now + 200, unmarked_only=True)
    finally:
        store.db.fetch, store.db.execute = fetch, execute  # type: ignore[method-assign]
    marks = await _marks(store)
    assert marks[claimed] == (now, "claim")
    assert marks[rewritten] == (None, None)
    others = [j.id for j in jobs if j.id not in (claimed, rewritten)]
    assert all(marks[i] == (now + 200, "e1") for i in others), marks
    assert [sql.split()[0] for sql, _ in statements] == ["SELECT", "UPDATE"], statements
    assert claimed in str(statements[0][1]) and claimed not in str(statements[1][1])


def test_enqueue_batch_is_checked() -> None:
    for bad in (0, 3001, "10", 2.5):
        with pytest.raises(ConfigurationError, match="enqueue_batch"):
            Queue("q", enqueue_batch=bad)  # type: ignore[arg-type]


async def test_a_retried_job_is_marked_after_its_follow_up_push(make_queue: QueueFactory) -> None:
    """The runner's marks carry the retry's own write: the row waiting for its retry is
    marked dispatched, so the sweeper leaves it alone."""
    q = make_queue()

    @q.task
    async def later() -> None:
        raise Retry(delay=3600)

    job = await later.enqueue()
    await Runner(q, RunnerConfig(burst=True, handle_signals=False)).run()
    be = await q._backend()
    await be.marker.close()
    info = await job.info()
    assert info.status is JobStatus.TODO and info.attempts == 1
    params: list[object] = []
    rows = await be.store.db.fetch(
        f"SELECT dispatched_at, dispatch_epoch, updated_at FROM {be.store.sql.t} "
        f"WHERE id = {be.store.sql.bind(params, job.id)}",
        params,
    )
    dispatched_at, epoch, updated_at = rows[0]
    assert dispatched_at is not None and dispatched_at >= updated_at
    assert epoch == await be.broker.epoch()


async def test_enqueue_many_refuses_malformed_calls_and_stores_nothing(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()

    @q.task
    async def t(n: int) -> None:
        return None

    bad: Any
    for bad in ((t, (1,)), (t, 1, {}), (t, (1,), [("a", 1, 2)]), "t"):
        with pytest.raises(ConfigurationError, match=r"\(task, args, kwargs\)"):
            await q.enqueue_many([(t, (1,), {}), bad])
    be = await q._backend()
    assert (await be.store.db.fetch(f"SELECT COUNT(*) FROM {be.store.sql.t}"))[0][0] == 0


async def test_a_push_lost_before_its_mark_is_dispatched_again(
    make_queue: QueueFactory, redis_client: Any
) -> None:
    """Redis loses its data after a job's push and before the producer marks it: the mark
    must name the dataset the push went into, so that a runner started afterwards (one
    that never saw the old epoch, so no resync) sweeps the job back into Redis."""
    q = make_queue()

    @q.task
    async def t(n: int) -> None:
        return None

    be = await q._backend()
    old = await be.broker.epoch()
    job = await t.enqueue(1)
    many = await q.enqueue_many([(t, (i,), {}) for i in range(3)])
    # Redis restarts empty (this queue's keys only: the server is shared)
    keys = [k async for k in redis_client.scan_iter(match=f"{{{q.key_prefix}:*")]
    assert keys
    await redis_client.delete(*keys)
    await be.marker.close()  # the marks, written after the loss
    new = await be.broker.epoch()
    assert new != old
    marks = await _marks(be.store)
    assert len(marks) == 4
    assert all(ep != new for _, ep in marks.values()), marks  # not under the new dataset
    # what a runner's sweeper picks up (grace 0): all four, though each was marked
    swept = await be.store.undispatched(be.queue_name, new, now_us(), "", 100)
    assert {r.id for r in swept} == {job.id, *(j.id for j in many)}
