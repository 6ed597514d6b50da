"""The ``JobStore`` contract, part 2: dispatch marks, the sweeper's and reclaimer's reads
and writes, job control, purges, counts and schedules. One suite over the memory, SQLite,
MariaDB and PostgreSQL stores (``store`` fixture)."""

from __future__ import annotations

from aqueue._ids import new_job_ids, now_us
from aqueue._models import JobStatus, id_runs
from aqueue._store.base import JobStore
from aqueue._store.values import Finish, Reclaim

from .helpers import claim, new


async def test_undispatched_until_marked_under_the_current_epoch(store: JobStore) -> None:
    now = now_us()
    a, b = new(), new()
    await store.insert_jobs([a, b], now)

    async def swept(epoch: str, written_before: int = now + 1) -> set[str]:
        return {r.id for r in await store.undispatched("q", epoch, written_before, "", 100)}

    assert await swept("e1", written_before=now) == set()  # written within the grace
    assert await swept("e1") == {a.id, b.id}
    await store.mark_dispatched([(a.id, now), (b.id, now - 1)], "e1", now)  # b: stale write
    assert await swept("e1") == {b.id}
    assert await swept("e2") == {a.id, b.id}  # a was marked in another dataset
    # unmarked_only leaves a's mark (e1) alone and marks b
    await store.mark_dispatched([(a.id, now), (b.id, now)], "e2", now, unmarked_only=True)
    assert await swept("e1") == {b.id}
    assert await swept("e2") == {a.id}


async def test_marks_by_runs_of_batch_ids(store: JobStore) -> None:
    now = now_us()
    jobs = [new(job_id=i)._replace(explicit_id=False, created_at=now) for i in new_job_ids(5)]
    await store.insert_jobs(jobs, now)
    singles, runs = id_runs(jobs)
    assert singles == [] and len(runs) == 1
    await store.mark_dispatched([], "e1", now, [(runs[0], now)])
    assert await store.undispatched("q", "e1", now + 1, "", 100) == []


async def test_undispatched_pages_in_id_order_and_skips_other_states(store: JobStore) -> None:
    now = now_us()
    jobs = sorted([new() for _ in range(5)], key=lambda j: j.id)
    await store.insert_jobs(jobs, now)
    await store.claim(claim([jobs[0].id], "tok", now=now))
    page = await store.undispatched("q", "e", now + 1, "", 2)
    assert [r.id for r in page] == [jobs[1].id, jobs[2].id]
    page = await store.undispatched("q", "e", now + 1, page[-1].id, 10)
    assert [r.id for r in page] == [jobs[3].id, jobs[4].id]


async def test_a_claim_marks_the_job_dispatched(store: JobStore) -> None:
    now = now_us()
    j = new()
    await store.insert_jobs([j], now)
    await store.claim(claim([j.id], "tok", now=now))
    fin = Finish(j.id, "tok", JobStatus.TODO, error="r", run_at=now)
    await store.finish([fin], now + 1)
    # a retry is not marked until its follow-up message is
    assert [r.id for r in await store.undispatched("q", "e", now + 2, "", 10)] == [j.id]


async def test_dispatchable_is_todo_and_expired_running(store: JobStore) -> None:
    now = now_us()
    todo, live, expired, done = new(), new(), new(), new()
    ids = sorted(j.id for j in (todo, live, expired, done))
    await store.insert_jobs([todo, live, expired, done], now)
    await store.claim(claim([live.id], "t1", now=now, lease=10_000_000))
    await store.claim(claim([expired.id, done.id], "t2", now=now, lease=10))
    await store.finish([Finish(done.id, "t2", JobStatus.DONE)], now)
    got = [r.id for r in await store.dispatchable("q", "", 100, now + 1000)]
    assert got == [i for i in ids if i in (todo.id, expired.id)]


async def test_reclaim_counts_the_stall_and_gives_the_attempt_back(store: JobStore) -> None:
    now = now_us()
    a, b, c = new(), new(), new(unique_key="u")
    await store.insert_jobs([a, b, c], now)
    await store.claim(claim([a.id, c.id], "tok", now=now, lease=10))
    await store.claim(claim([b.id], "tok2", now=now, lease=60_000_000))
    later = now + 1000
    expired = await store.expired_leases("q", later, 10)
    assert {r.id for r in expired} == {a.id, c.id}
    assert await store.expired_leases("q", later, 1) == expired[:1]
    decisions = [
        Reclaim(a.id, "tok", JobStatus.TODO, None),
        Reclaim(b.id, "tok2", JobStatus.TODO, None),  # lease not expired: untouched
        Reclaim(c.id, "tok", JobStatus.FAILED, "died"),
    ]
    assert await store.reclaim(decisions, later, later) == {a.id, c.id}
    ra, rb, rc = [await store.get_job(i) for i in (a.id, b.id, c.id)]
    assert ra is not None and rb is not None and rc is not None
    assert (ra.status, ra.stalls, ra.attempts, ra.run_at, ra.lease_token) == (
        JobStatus.TODO,
        1,
        0,
        later,
        None,
    )
    assert rb.status is JobStatus.RUNNING and rb.stalls == 0
    assert (rc.status, rc.stalls, rc.error, rc.finished_at, rc.unique_key) == (
        JobStatus.FAILED,
        1,
        "died",
        later,
        None,
    )
    # the old copy's claim (stalls 0) is fenced out; the reclaimed copy's wins
    assert await store.claim(claim([a.id], "t3", now=later)) == set()
    assert await store.claim(claim([a.id], "t3", now=later, stalls=1)) == {a.id}
    # a reclaim with the old token changes nothing
    assert await store.reclaim([Reclaim(a.id, "tok", JobStatus.TODO, None)], later, later) == set()


async def test_repush_resets_a_finished_job_and_revokes_a_running_one(store: JobStore) -> None:
    now = now_us()
    a, b = new(), new()
    await store.insert_jobs([a, b], now)
    await store.claim(claim([a.id, b.id], "tok", now=now, lease=5_000_000))
    await store.finish([Finish(a.id, "tok", JobStatus.FAILED, error="x")], now)
    ra = await store.repush(a.id, now + 1, force=False)
    assert ra is not None
    assert (ra.status, ra.attempts, ra.stalls, ra.error, ra.finished_at, ra.run_at) == (
        JobStatus.TODO,
        0,
        0,
        None,
        None,
        now + 1,
    )
    rb = await store.repush(b.id, now + 1, force=False)
    assert rb is not None and rb.status is JobStatus.RUNNING and rb.lease_token == "tok"
    rb = await store.repush(b.id, now + 1, force=True)
    assert rb is not None
    assert (rb.status, rb.run_at, rb.lease_token) == (JobStatus.TODO, now + 5_000_000, None)
    assert await store.renew([(b.id, "tok")], now + 2) == {b.id}
    assert await store.repush("missing", now, force=True) is None


async def test_cancel_ends_todo_and_running_jobs_only(store: JobStore) -> None:
    now = now_us()
    later, running, done = new(run_at=now + 10**9, unique_key="k"), new(), new()
    await store.insert_jobs([later, running, done], now)
    await store.claim(claim([running.id, done.id], "tok", now=now))
    await store.finish([Finish(done.id, "tok", JobStatus.DONE)], now)
    assert await store.cancel(later.id, "no", now)
    assert await store.cancel(running.id, "no", now)
    assert not await store.cancel(done.id, "no", now)
    assert not await store.cancel("missing", "no", now)
    rl = await store.get_job(later.id)
    assert rl is not None
    assert (rl.status, rl.error, rl.finished_at, rl.run_at, rl.unique_key) == (
        JobStatus.CANCELLED,
        "no",
        now,
        now,
        None,
    )
    # a cancelled running job's finish is refused
    assert await store.finish([Finish(running.id, "tok", JobStatus.DONE)], now) == set()


async def test_reads_counts_and_purges(store: JobStore) -> None:
    now = now_us()
    jobs = sorted([new() for _ in range(4)], key=lambda j: j.id)
    delayed = new(run_at=now + 10**9)
    other = new(queue="q2")
    await store.insert_jobs([*jobs, delayed, other], now)
    await store.claim(claim([jobs[0].id, jobs[1].id], "tok", now=now))
    await store.finish([Finish(jobs[0].id, "tok", JobStatus.DONE)], now)
    counts = await store.count_by_status("q")
    assert counts == {
        JobStatus.WAITING: 0,
        JobStatus.TODO: 3,
        JobStatus.RUNNING: 1,
        JobStatus.DONE: 1,
        JobStatus.FAILED: 0,
        JobStatus.CANCELLED: 0,
    }
    assert await store.ids_by_status("q", JobStatus.TODO, 10) == sorted(
        [jobs[2].id, jobs[3].id, delayed.id]
    )
    assert len(await store.ids_by_status("q", JobStatus.TODO, 2)) == 2
    assert await store.unfinished_count("q", now) == 3  # running + two due
    assert await store.waiting_jobs("q", 100) == 3
    assert await store.waiting_jobs("q", 2) == 2
    assert await store.purge_finished("q", now) == 0  # finished at now: not before it
    assert await store.purge_finished("q", now + 1) == 1
    assert await store.get_job(jobs[0].id) is None
    assert await store.purge_queue("q") == 4
    assert await store.count_by_status("q2") == {**dict.fromkeys(JobStatus, 0), "todo": 1}


async def test_first_seen_is_the_first_record(store: JobStore) -> None:
    now = now_us()
    assert await store.first_seen("schedule:a", now) == now
    assert await store.first_seen("schedule:a", now + 50) == now
    assert await store.first_seen("schedule:b", now + 50) == now + 50


async def test_schema_version_is_recorded(store: JobStore) -> None:
    version = await store.schema_version()
    assert version is not None and version >= 1
    assert await store.init_schema() == version
    assert await store.upgrade_schema() == (version, version)
