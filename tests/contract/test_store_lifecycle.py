"""The ``JobStore`` contract, part 1: enqueue, claim, finish, renew, release. One suite
over the memory, SQLite, MariaDB and PostgreSQL stores (``store`` fixture)."""

from __future__ import annotations

from aqueue._errors import StoreError
from aqueue._ids import now_us
from aqueue._models import JobStatus
from aqueue._store.base import JobStore
from aqueue._store.values import Finish

from .helpers import LEASE, claim, new


async def test_insert_then_read_back(store: JobStore) -> None:
    now = now_us()
    j = new(priority=2, max_attempts=5, run_at=now + 1000)
    assert await store.insert_jobs([j], now) == [j.id]
    rec = await store.get_job(j.id)
    assert rec is not None
    assert (rec.status, rec.attempts, rec.stalls) == (JobStatus.TODO, 0, 0)
    assert (rec.task, rec.payload, rec.priority, rec.max_attempts) == ("t", j.payload, 2, 5)
    assert (rec.run_at, rec.created_at, rec.updated_at) == (now + 1000, j.created_at, now)
    assert rec.lease_token is None and rec.finished_at is None
    assert await store.get_job("no-such-job") is None


async def test_an_explicit_id_is_stored_once(store: JobStore) -> None:
    now = now_us()
    first = new(job_id="fixed-1")
    again = first._replace(payload='{"a":[2]}')
    assert await store.insert_jobs([first], now) == ["fixed-1"]
    assert await store.insert_jobs([again], now + 1) == ["fixed-1"]
    rec = await store.get_job("fixed-1")
    assert rec is not None and rec.payload == first.payload and rec.updated_at == now


async def test_a_live_unique_key_stands_for_its_job(store: JobStore) -> None:
    now = now_us()
    a, b = new(unique_key="k"), new(unique_key="k")
    other_queue = new(unique_key="k", queue="q2")
    assert await store.insert_jobs([a, b, other_queue], now) == [a.id, a.id, other_queue.id]
    assert await store.get_job(b.id) is None
    # finished: the key is released
    assert await store.claim(claim([a.id], "tok", now=now)) == {a.id}
    assert await store.finish([Finish(a.id, "tok", JobStatus.DONE, result="1")], now) == {a.id}
    c = new(unique_key="k")
    assert await store.insert_jobs([c], now) == [c.id]


async def test_a_claim_takes_due_todo_jobs_fenced_by_stalls_and_attempts(
    store: JobStore,
) -> None:
    now = now_us()
    due, later, fenced = new(), new(run_at=now + 10_000_000), new()
    await store.insert_jobs([due, later, fenced], now)
    won = await store.claim(claim([due.id, later.id], "tok", now=now))
    assert won == {due.id}
    assert await store.claim(claim([fenced.id], "tok2", now=now, attempts=1)) == set()
    assert await store.claim(claim([fenced.id], "tok2", now=now, stalls=1)) == set()
    rec = await store.get_job(due.id)
    assert rec is not None
    assert (rec.status, rec.attempts, rec.lease_owner, rec.lease_token) == (
        JobStatus.RUNNING,
        1,
        "r1",
        "tok",
    )
    assert rec.leased_until == now + LEASE and rec.updated_at == now
    # taken: a second claim (another token) loses it
    assert await store.claim(claim([due.id], "tok3", now=now, attempts=0)) == set()
    assert await store.claim(claim([due.id], "tok3", now=now, attempts=1)) == set()


async def test_a_claim_taken_again_under_its_token(store: JobStore) -> None:
    now = now_us()
    a, b = new(), new()
    await store.insert_jobs([a, b], now)
    assert await store.claim(claim([a.id], "tok", now=now)) == {a.id}
    # again: held under the token already counts as won
    assert await store.claim(claim([a.id, b.id], "tok", now=now), again=True) == {a.id, b.id}
    held, retaken = await store.claim_again(claim([a.id], "tok", now=now))
    assert (held, retaken) == ({a.id}, set())
    c = new()
    await store.insert_jobs([c], now)
    held, retaken = await store.claim_again(claim([a.id, c.id], "tok", now=now))
    assert (held, retaken) == ({a.id}, {c.id})
    held, retaken = await store.claim_again(claim([c.id], "other", now=now))
    assert (held, retaken) == (set(), set())


async def test_an_open_claim_is_durable_once_committed(store: JobStore) -> None:
    now = now_us()
    j = new()
    await store.insert_jobs([j], now)
    won, commit = await store.claim_open(claim([j.id], "tok", now=now))
    assert won == {j.id}
    if commit is not None:
        await commit()
    rec = await store.get_job(j.id)
    assert rec is not None and rec.status is JobStatus.RUNNING and rec.lease_token == "tok"
    won, commit = await store.claim_open(claim([j.id], "tok2", now=now))
    assert won == set() and commit is None


async def test_claim_states_of_lost_claims(store: JobStore) -> None:
    now = now_us()
    j = new(run_at=now + 5)
    await store.insert_jobs([j], now)
    states = await store.claim_states([j.id, "missing"])
    assert set(states) == {j.id}
    st = states[j.id]
    assert (st.status, st.run_at, st.leased_until, st.stalls, st.attempts) == (
        JobStatus.TODO,
        now + 5,
        None,
        0,
        0,
    )


async def test_finish_is_fenced_by_the_lease_token(store: JobStore) -> None:
    now = now_us()
    a, b, c = new(unique_key="u"), new(), new()
    await store.insert_jobs([a, b, c], now)
    await store.claim(claim([a.id, b.id, c.id], "tok", now=now))
    later = now + 1000
    accepted = await store.finish(
        [
            Finish(a.id, "tok", JobStatus.DONE, result='"ok"'),
            Finish(b.id, "wrong", JobStatus.FAILED, error="e"),
            Finish(c.id, "tok", JobStatus.FAILED, error="boom"),
        ],
        later,
    )
    assert accepted == {a.id, c.id}
    ra, rb, rc = [await store.get_job(i) for i in (a.id, b.id, c.id)]
    assert ra is not None and rb is not None and rc is not None
    assert (ra.status, ra.result, ra.finished_at, ra.updated_at) == (
        JobStatus.DONE,
        '"ok"',
        later,
        later,
    )
    assert ra.unique_key is None and ra.leased_until is None
    assert rb.status is JobStatus.RUNNING
    assert (rc.status, rc.error) == (JobStatus.FAILED, "boom")
    # a finished job takes no second finish
    assert await store.finish([Finish(a.id, "tok", JobStatus.FAILED, error="x")], later) == set()


async def test_a_retry_is_todo_again_with_its_run_at(store: JobStore) -> None:
    now = now_us()
    j = new()
    await store.insert_jobs([j], now)
    await store.claim(claim([j.id], "tok", now=now))
    retry_at = now + 2_000_000
    fin = Finish(j.id, "tok", JobStatus.TODO, error="Retry", run_at=retry_at)
    assert await store.finish([fin], now + 1) == {j.id}
    rec = await store.get_job(j.id)
    assert rec is not None
    assert (rec.status, rec.run_at, rec.attempts, rec.error) == (
        JobStatus.TODO,
        retry_at,
        1,
        "Retry",
    )
    assert rec.lease_token is None and rec.lease_owner is None and rec.leased_until is None
    # the next claim is fenced by the attempt used, and only once due
    assert await store.claim(claim([j.id], "t2", now=now + 2, attempts=1)) == set()
    assert await store.claim(claim([j.id], "t2", now=retry_at, attempts=0)) == set()
    assert await store.claim(claim([j.id], "t2", now=retry_at, attempts=1)) == {j.id}


async def test_renew_reports_the_leases_that_are_gone(store: JobStore) -> None:
    now = now_us()
    a, b = new(), new()
    await store.insert_jobs([a, b], now)
    await store.claim(claim([a.id, b.id], "tok", now=now))
    lost = await store.renew([(a.id, "tok"), (b.id, "bad"), ("missing", "tok")], now + 99)
    assert lost == {b.id, "missing"}
    rec = await store.get_job(a.id)
    assert rec is not None and rec.leased_until == now + 99
    assert await store.cancel(a.id, "stop", now)
    assert await store.renew([(a.id, "tok")], now + 100) == {a.id}
    assert await store.renew([], now) == set()


async def test_release_gives_back_the_attempt(store: JobStore) -> None:
    now = now_us()
    a, b = new(), new()
    await store.insert_jobs([a, b], now)
    await store.claim(claim([a.id, b.id], "tok", now=now))
    assert await store.release_claims([(a.id, "tok"), (b.id, "bad")], now + 5) == 1
    ra = await store.get_job(a.id)
    assert ra is not None
    assert (ra.status, ra.attempts, ra.stalls, ra.lease_token, ra.updated_at) == (
        JobStatus.TODO,
        0,
        0,
        None,
        now + 5,
    )
    rb = await store.get_job(b.id)
    assert rb is not None and rb.status is JobStatus.RUNNING


async def test_release_owner_puts_back_its_running_jobs_but_kept_ones(store: JobStore) -> None:
    now = now_us()
    a, b, c, other = new(), new(), new(), new()
    await store.insert_jobs([a, b, c, other], now)
    await store.claim(claim([a.id, b.id, c.id], "tok", now=now, owner="me"))
    await store.claim(claim([other.id], "tok2", now=now, owner="you"))
    assert await store.owner_running("q", "me") == 3
    assert await store.release_owner("q", "me", now, keep=[c.id]) == 2
    assert await store.owner_running("q", "me") == 1
    assert await store.owner_running("q", "you") == 1
    ra = await store.get_job(a.id)
    assert ra is not None and (ra.status, ra.attempts) == (JobStatus.TODO, 0)


async def test_fail_unclaimed_fails_only_todo_jobs(store: JobStore) -> None:
    now = now_us()
    a, b = new(run_at=now + 10_000_000, unique_key="x"), new()
    await store.insert_jobs([a, b], now)
    await store.claim(claim([b.id], "tok", now=now))
    assert await store.fail_unclaimed(a.id, "bad message", now)
    assert not await store.fail_unclaimed(b.id, "bad message", now)
    ra = await store.get_job(a.id)
    assert ra is not None
    assert (ra.status, ra.error, ra.finished_at, ra.run_at, ra.unique_key) == (
        JobStatus.FAILED,
        "bad message",
        now,
        now,
        None,
    )


async def test_a_conflicting_plain_insert_affects_only_its_job(store: JobStore) -> None:
    now = now_us()
    j = new()
    await store.insert_jobs([j], now)
    dup = j._replace(explicit_id=False)
    fresh = new()
    out = await store.insert_jobs([dup, fresh], now)
    assert isinstance(out[0], StoreError)
    assert out[1] == fresh.id
