"""The ``JobStore`` contract, part 3: the operators' reads and bulk actions (filters,
keyset pages newest first, backlog age, repush / cancel / delete of many jobs). One suite
over the memory, SQLite, MariaDB and PostgreSQL stores."""

from __future__ import annotations

from aqueue._ids import now_us
from aqueue._models import JobStatus, NewJob
from aqueue._store.base import JobStore
from aqueue._store.values import Finish, JobQuery

from .helpers import claim, new


async def _five(store: JobStore) -> tuple[list[NewJob], int]:
    """Five jobs of queue q created 1 s apart (ids in time order, as generated ids are
    from one millisecond to the next), one of q2; the second one failed with an error,
    the third done, the fourth running."""
    base = now_us() - 10_000_000
    jobs = [new(job_id=f"job-{i}", created_at=base + i * 1_000_000) for i in range(5)]
    jobs[2] = jobs[2]._replace(task="other", payload='{"a":["100%_sure"]}')
    await store.insert_jobs([*jobs, new(queue="q2")], base)
    now = now_us()
    ids = [j.id for j in jobs]
    assert await store.claim(claim(ids[1:4], "tok", now=now)) == set(ids[1:4])
    finishes = [
        Finish(ids[1], "tok", JobStatus.FAILED, error='{"type":"Boom","message":"disk full"}'),
        Finish(ids[2], "tok", JobStatus.DONE, result="1"),
    ]
    assert await store.finish(finishes, now) == set(ids[1:3])
    return jobs, now


async def test_find_jobs_pages_newest_first_by_keyset(store: JobStore) -> None:
    jobs, _ = await _five(store)
    ids = [j.id for j in jobs]
    page = await store.find_jobs(JobQuery("q"), 2)
    assert [r.id for r in page] == [ids[4], ids[3]]
    page = await store.find_jobs(JobQuery("q", before_id=page[-1].id), 2)
    assert [r.id for r in page] == [ids[2], ids[1]]
    page = await store.find_jobs(JobQuery("q", before_id=page[-1].id), 2)
    assert [r.id for r in page] == [ids[0]]
    assert await store.find_jobs(JobQuery("nope"), 10) == []


async def test_find_jobs_filters_narrow_together(store: JobStore) -> None:
    jobs, _ = await _five(store)
    ids = [j.id for j in jobs]

    async def found(**kw: object) -> list[str]:
        return [r.id for r in await store.find_jobs(JobQuery("q", **kw), 100)]  # type: ignore[arg-type]

    assert await found(statuses=(JobStatus.FAILED,)) == [ids[1]]
    assert await found(statuses=(JobStatus.TODO, JobStatus.RUNNING)) == [ids[4], ids[3], ids[0]]
    assert await found(task="other") == [ids[2]]
    assert await found(job_id=ids[3]) == [ids[3]]
    assert await found(text="disk full") == [ids[1]]  # in the error
    assert await found(text="100%_") == [ids[2]]  # in the arguments; wildcards literal
    assert await found(text="1%0") == []
    assert await found(text="%") == [ids[2]]
    assert await found(text="DISK") == []  # case sensitive on every store
    assert await found(created_from=jobs[1].created_at, created_to=jobs[3].created_at) == [
        ids[2],
        ids[1],
    ]
    assert await found(statuses=(JobStatus.DONE,), task="t") == []


async def test_oldest_due_is_the_backlog_age(store: JobStore) -> None:
    now = now_us()
    assert await store.oldest_due("q", now) is None
    old, newer, later = new(run_at=now - 5_000_000), new(run_at=now - 1_000), new(run_at=now + 9)
    await store.insert_jobs([newer, old, later], now)
    assert await store.oldest_due("q", now) == now - 5_000_000
    assert await store.claim(claim([old.id], "tok", now=now)) == {old.id}
    assert await store.oldest_due("q", now) == now - 1_000


async def test_bulk_repush_cancel_and_delete_spare_running_jobs(store: JobStore) -> None:
    jobs, now = await _five(store)
    ids = [j.id for j in jobs]
    later = now + 10
    repushed = await store.repush_jobs("q", [ids[1], ids[2], ids[3], "no-such-job"], later)
    assert sorted(r.id for r in repushed) == sorted([ids[1], ids[2]])
    for rec in repushed:
        assert (rec.status, rec.attempts, rec.error, rec.result) == (JobStatus.TODO, 0, None, None)
        assert (rec.run_at, rec.updated_at, rec.finished_at) == (later, later, None)
    running = await store.get_job(ids[3])
    assert running is not None and running.status is JobStatus.RUNNING

    cancelled = await store.cancel_jobs("q", [ids[0], ids[3], "no-such-job"], "enough", later + 1)
    assert cancelled == {ids[0], ids[3]}
    rec = await store.get_job(ids[3])
    assert rec is not None and rec.status is JobStatus.CANCELLED and rec.lease_token is None
    assert await store.cancel_jobs("q", [ids[0]], "again", later + 2) == set()  # already final

    assert await store.claim(claim([ids[4]], "tok2", now=later)) == {ids[4]}
    assert await store.delete_jobs("q", [ids[0], ids[4], "no-such-job"]) == 1
    assert await store.get_job(ids[0]) is None
    assert await store.get_job(ids[4]) is not None  # running: kept
    assert await store.repush_jobs("q", [], later) == []
    assert await store.cancel_jobs("q", [], "x", later) == set()
    assert await store.delete_jobs("q", []) == 0


async def test_finished_counts_per_bucket_and_status(store: JobStore) -> None:
    jobs, now = await _five(store)  # one failed and one done at ``now``, in queue q
    bucket = 60_000_000
    start = now - now % bucket
    assert sorted(await store.finished_counts("q", now - 1, bucket, 0)) == [
        (start, JobStatus.DONE, 1),
        (start, JobStatus.FAILED, 1),
    ]
    assert await store.finished_counts("q", now + 1, bucket, 0) == []
    assert await store.finished_counts("q2", 0, bucket, 0) == []
    # due (run_at) before due_after: not counted (the index bounds the rows read)
    due = max(j.run_at for j in jobs[1:3])
    assert await store.finished_counts("q", now - 1, bucket, due + 1) == []


async def test_bulk_actions_leave_other_queues_jobs_alone(store: JobStore) -> None:
    # Several queues may share a table; a job of q2 retried through q would be sent to
    # q's lists.
    now = now_us()
    other = new(queue="q2")
    await store.insert_jobs([other], now)
    assert await store.cancel_jobs("q", [other.id], "x", now + 1) == set()
    assert await store.repush_jobs("q", [other.id], now + 2) == []
    assert await store.delete_jobs("q", [other.id]) == 0
    rec = await store.get_job(other.id)
    assert rec is not None and (rec.status, rec.updated_at) == (JobStatus.TODO, now)
    assert await store.cancel_jobs("q2", [other.id], "x", now + 3) == {other.id}
    assert await store.delete_jobs("q2", [other.id]) == 1


async def test_scan_floor_bounds_a_search_window(store: JobStore) -> None:
    jobs, _ = await _five(store)
    ids = [j.id for j in jobs]
    assert await store.scan_floor("q", None, 2) == ids[3]  # the 2nd newest
    assert await store.scan_floor("q", ids[3], 2) == ids[1]  # 2 more below ids[3]
    assert await store.scan_floor("q", None, 5) == ids[0]
    assert await store.scan_floor("q", None, 6) is None  # fewer jobs left: the end
    assert await store.scan_floor("q", ids[1], 2) is None
    # the window: from_id bounds a search (the floor itself included)
    window = JobQuery("q", statuses=(JobStatus.FAILED,), from_id=ids[3])
    assert await store.find_jobs(window, 10) == []
    found = await store.find_jobs(JobQuery("q", from_id=ids[2], before_id=ids[4]), 10)
    assert [r.id for r in found] == [ids[3], ids[2]]


async def test_count_by_status_bounded_exact_up_to_the_cap(store: JobStore) -> None:
    await _five(store)  # q: todo 2, running 1, failed 1, done 1
    exact = await store.count_by_status("q")
    counts = await store.count_by_status_bounded("q", 3)
    assert set(counts) == set(JobStatus)
    assert all(counts[s] == (exact[s], True) for s in JobStatus)
    counts = await store.count_by_status_bounded("q", 2)  # todo reaches the cap
    for s in JobStatus:
        n, is_exact = counts[s]
        if s is JobStatus.TODO and not is_exact:  # the database's estimate, never below
            assert n >= 2
        else:
            assert (n, is_exact) == (exact[s], True)
