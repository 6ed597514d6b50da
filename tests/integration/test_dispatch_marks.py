"""Dispatch marks: an ``enqueue_many`` batch is marked by its id range, and the range
never reaches a row outside the batch, on MariaDB and SQLite."""

from __future__ import annotations

import pytest

from aqueue import ConfigurationError, Queue
from aqueue._models import IdRun, NewJob, id_runs, new_job_ids, now_us
from aqueue._store.store import Store

from ..conftest import QueueFactory


async def _marks(store: Store) -> dict[str, tuple[int | None, str | None]]:
    rows = await store._fetch(f"SELECT id, dispatched_at, dispatch_epoch FROM {store._t}")
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
    await store.mark_dispatched(singles, "e1", now, runs, unmarked_only=True)
    marks = await _marks(store)
    assert all(marks[i] == (now, "e1") for i in ids)
    assert marks[inside] == (None, None)  # inside the range, not of the batch
    assert marks[others[1].id] == (None, None)  # same prefix and instant, outside it

    # unmarked_only leaves a row that already carries a mark (a claim's) alone ...
    await store.mark_dispatched([inside, ids[5]], "e2", now + 5, unmarked_only=True)
    marks = await _marks(store)
    assert marks[inside] == (now + 5, "e2") and marks[ids[5]] == (now, "e1")
    # ... and the sweeper's marks overwrite (a message pushed again under a new epoch).
    await store.mark_dispatched([ids[5]], "e3", now + 9, runs[:1])
    marks = await _marks(store)
    assert all(marks[i] == (now + 9, "e3") for i in ids)


def test_enqueue_batch_is_checked() -> None:
    for bad in (0, 3001, "10", 2.5):
        with pytest.raises(ConfigurationError, match="enqueue_batch"):
            Queue("q", enqueue_batch=bad)  # type: ignore[arg-type]
