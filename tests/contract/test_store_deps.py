"""Dependencies in every store: a job with parents waits until they are done, is released
by the finish of its last parent (in the same write), is cancelled (with its own
children) when a parent fails, or runs anyway when it asked to; a plain job's finish is
unchanged."""

from __future__ import annotations

import asyncio

import pytest

from aqueue._errors import ConfigurationError
from aqueue._ids import now_us
from aqueue._models import JobStatus, NewJob
from aqueue._store.base import JobStore
from aqueue._store.store import Store
from aqueue._store.values import Edge, Finish, Reclaim

from .helpers import claim, new


async def _run(store: JobStore, jobs: list[NewJob], status: JobStatus, now: int) -> list[str]:
    """Claim and finish ``jobs`` with ``status``; returns the ids of the released jobs."""
    ids = [j.id for j in jobs]
    assert await store.claim(claim(ids, "tok", now=now)) == set(ids)
    result = '"r"' if status is JobStatus.DONE else None
    error = None if status is JobStatus.DONE else "boom"
    accepted, released = await store.finish_release(
        [Finish(i, "tok", status, result, error) for i in ids], now
    )
    assert accepted == set(ids)
    return sorted(r.id for r in released)


async def _status(store: JobStore, job_id: str) -> JobStatus:
    rec = await store.get_job(job_id)
    assert rec is not None
    return rec.status


async def test_child_waits_for_every_parent_and_is_released_by_the_last(store: JobStore) -> None:
    now = now_us()
    a, b = sorted([new(), new()], key=lambda j: j.id)
    child = new()
    await store.insert_jobs([a, b], now)
    states = await store.insert_with_parents(
        [child], [Edge(a.id, child.id), Edge(b.id, child.id)], now
    )
    assert states == {child.id: JobStatus.WAITING}
    rec = await store.get_job(child.id)
    assert rec is not None and rec.status is JobStatus.WAITING and rec.parents_left == 2
    # a waiting job cannot be claimed
    assert await store.claim(claim([child.id], "x", now=now)) == set()
    assert await _run(store, [a], JobStatus.DONE, now) == []
    rec = await store.get_job(child.id)
    assert rec is not None and rec.parents_left == 1
    later = now + 1000
    assert await _run(store, [b], JobStatus.DONE, later) == [child.id]
    rec = await store.get_job(child.id)
    assert rec is not None and rec.status is JobStatus.TODO and rec.updated_at == later
    assert rec.run_at >= later
    # the released child is a plain todo job: claimed, run, finished
    assert await _run(store, [child], JobStatus.DONE, later) == []
    assert await _status(store, child.id) is JobStatus.DONE


async def test_parents_finished_in_one_batch_release_their_child_once(store: JobStore) -> None:
    now = now_us()
    parents = sorted([new() for _ in range(5)], key=lambda j: j.id)
    child = new()
    await store.insert_with_parents([*parents, child], [Edge(p.id, child.id) for p in parents], now)
    assert await _status(store, parents[0].id) is JobStatus.TODO
    assert await _run(store, parents[:3], JobStatus.DONE, now) == []
    assert await _run(store, parents[3:], JobStatus.DONE, now) == [child.id]
    counts = await store.count_by_status("q")
    assert counts[JobStatus.TODO] == 1 and counts[JobStatus.DONE] == 5


async def test_halves_of_a_group_finished_at_once_release_the_callback_once(
    store: JobStore,
) -> None:
    """Two runners finish the two halves of a chord's group at the same moment (two
    transactions or statements in flight together): the callback is released by exactly
    one of them, and counted down by both."""
    now = now_us()
    parents = sorted([new() for _ in range(40)], key=lambda j: j.id)
    callback = new()
    await store.insert_with_parents(
        [*parents, callback], [Edge(p.id, callback.id) for p in parents], now
    )
    halves = [parents[::2], parents[1::2]]
    for k, half in enumerate(halves):
        ids = [p.id for p in half]
        assert await store.claim(claim(ids, f"tok{k}", now=now)) == set(ids)
    results = await asyncio.gather(
        *(
            store.finish_release(
                [Finish(p.id, f"tok{k}", JobStatus.DONE, f'"{p.id}"', None) for p in half],
                now + 1,
            )
            for k, half in enumerate(halves)
        )
    )
    assert [len(accepted) for accepted, _ in results] == [20, 20]
    assert sorted(r.id for _, released in results for r in released) == [callback.id]
    rec = await store.get_job(callback.id)
    assert rec is not None and rec.status is JobStatus.TODO and rec.parents_left == 0


async def test_a_batch_with_a_stale_token_finishes_and_counts_down_only_the_others(
    store: JobStore,
) -> None:
    """One finish of three parents, each with its own result, one of them under a token
    that is no longer its lease: the other two are done with their results and count
    down once each; the third finishes later and releases both children, the one due
    later keeping its time."""
    now = now_us()
    a, b, c = sorted([new(), new(), new()], key=lambda j: j.id)
    both, late = new(), new(run_at=now + 10**9)
    edges = [Edge(a.id, both.id), Edge(b.id, both.id), Edge(c.id, both.id), Edge(c.id, late.id)]
    await store.insert_with_parents([a, b, c, both, late], edges, now)
    assert await store.claim(claim([a.id, b.id], "tok", now=now)) == {a.id, b.id}
    assert await store.claim(claim([c.id], "tok-c", now=now)) == {c.id}
    batch = [
        Finish(a.id, "tok", JobStatus.DONE, '"ra"', None),
        Finish(b.id, "tok", JobStatus.DONE, '"rb"', None),
        Finish(c.id, "stale", JobStatus.DONE, '"rc"', None),
    ]
    accepted, released = await store.finish_release(batch, now + 1)
    assert accepted == {a.id, b.id} and released == []
    got = {j.id: await store.get_job(j.id) for j in (a, b, c, both, late)}
    assert got[a.id] is not None and (got[a.id].status, got[a.id].result) == (
        JobStatus.DONE,
        '"ra"',
    )
    assert got[b.id] is not None and got[b.id].result == '"rb"'
    assert got[c.id] is not None and got[c.id].status is JobStatus.RUNNING
    assert got[both.id] is not None and got[both.id].parents_left == 1
    assert got[late.id] is not None and got[late.id].parents_left == 1
    accepted, released = await store.finish_release(
        [Finish(c.id, "tok-c", JobStatus.DONE, '"rc"', None)], now + 2
    )
    assert accepted == {c.id}
    assert sorted(r.id for r in released) == sorted([both.id, late.id])
    by_id = {r.id: r for r in released}
    assert by_id[both.id].status is JobStatus.TODO and by_id[both.id].run_at == now + 2
    assert by_id[late.id].run_at == now + 10**9 and by_id[late.id].parents_left == 0
    for j in (both, late):
        rec = await store.get_job(j.id)
        assert rec is not None and rec.status is JobStatus.TODO
        assert rec.updated_at == now + 2 and rec.parents_left == 0


async def test_failed_parent_cancels_the_chain_below_it(store: JobStore) -> None:
    now = now_us()
    a, b, c = new(), new(), new()
    await store.insert_with_parents([a, b, c], [Edge(a.id, b.id), Edge(b.id, c.id)], now)
    assert await _status(store, b.id) is JobStatus.WAITING
    assert await _run(store, [a], JobStatus.FAILED, now) == []
    for job in (b, c):
        rec = await store.get_job(job.id)
        assert rec is not None and rec.status is JobStatus.CANCELLED
        assert rec.finished_at == now and rec.error is not None and "parent job" in rec.error
    assert a.id in (await store.get_job(b.id)).error  # type: ignore[union-attr]


async def test_run_anyway_child_runs_after_a_failed_parent(store: JobStore) -> None:
    now = now_us()
    a, b, child = new(), new(), new()
    await store.insert_jobs([a, b], now)
    await store.insert_with_parents(
        [child], [Edge(a.id, child.id, run_on_failure=True), Edge(b.id, child.id)], now
    )
    assert await _run(store, [a], JobStatus.FAILED, now) == []
    assert await _status(store, child.id) is JobStatus.WAITING
    assert await _run(store, [b], JobStatus.DONE, now) == [child.id]


async def test_parents_finished_before_the_child_is_enqueued(store: JobStore) -> None:
    now = now_us()
    done, failed, running = new(), new(), new()
    await store.insert_jobs([done, failed, running], now)
    await _run(store, [done], JobStatus.DONE, now)
    await _run(store, [failed], JobStatus.FAILED, now)
    ready, doomed, anyway = new(), new(), new()
    states = await store.insert_with_parents(
        [ready, doomed, anyway],
        [
            Edge(done.id, ready.id),
            Edge(failed.id, doomed.id),
            Edge(failed.id, anyway.id, run_on_failure=True),
        ],
        now,
    )
    assert states == {
        ready.id: JobStatus.TODO,
        doomed.id: JobStatus.CANCELLED,
        anyway.id: JobStatus.TODO,
    }
    rec = await store.get_job(doomed.id)
    assert rec is not None and rec.finished_at == now and failed.id in (rec.error or "")
    # a child of a running parent waits; the parent's late-known children still release
    waits = new()
    assert await store.insert_with_parents([waits], [Edge(running.id, waits.id)], now) == {
        waits.id: JobStatus.WAITING
    }
    assert await _run(store, [running], JobStatus.DONE, now) == [waits.id]


async def test_a_missing_parent_stores_nothing(store: JobStore) -> None:
    now = now_us()
    ok, child = new(), new()
    with pytest.raises(ConfigurationError, match="does not exist"):
        await store.insert_with_parents([ok, child], [Edge("no-such-job", child.id)], now)
    assert await store.get_job(ok.id) is None and await store.get_job(child.id) is None


async def test_late_or_repeated_finish_of_a_parent_releases_nothing_twice(
    store: JobStore,
) -> None:
    now = now_us()
    a, b, child = [*sorted([new(), new()], key=lambda j: j.id), new()]
    await store.insert_with_parents(
        [a, b, child], [Edge(a.id, child.id), Edge(b.id, child.id)], now
    )
    await store.claim(claim([a.id], "tok", now=now))
    first = await store.finish_release([Finish(a.id, "tok", JobStatus.DONE, "1")], now)
    assert first == ({a.id}, [])
    # the same outcome sent again (its reply lost; SQL accepts it as its own write, the
    # memory store, which loses no reply, refuses it): nothing is counted twice
    again = await store.finish_release([Finish(a.id, "tok", JobStatus.DONE, "1")], now)
    assert again[1] == []
    rec = await store.get_job(child.id)
    assert rec is not None and rec.parents_left == 1 and rec.status is JobStatus.WAITING
    # a late finish under a revoked token is refused
    assert await store.finish_release([Finish(b.id, "old", JobStatus.DONE)], now) == (set(), [])


async def test_parent_results_and_plain_finishes(store: JobStore) -> None:
    now = now_us()
    a, plain = new(), new()
    child = new()
    await store.insert_jobs([plain], now)
    await store.insert_with_parents([a, child], [Edge(a.id, child.id)], now)
    assert await _run(store, [plain, a], JobStatus.DONE, now) == [child.id]
    assert await store.parent_results(child.id) == [(a.id, JobStatus.DONE, '"r"')]
    # a parent done before its child was enqueued is among its parents too
    late = new()
    await store.insert_with_parents([late], [Edge(plain.id, late.id), Edge(a.id, late.id)], now)
    assert await store.parent_results(late.id) == sorted(
        [(a.id, JobStatus.DONE, '"r"'), (plain.id, JobStatus.DONE, '"r"')]
    )


async def test_a_parent_cancelled_failed_by_the_reclaimer_or_unrunnable_settles_its_children(
    store: JobStore,
) -> None:
    now = now_us()
    cancelled, reclaimed, malformed = new(), new(), new()
    await store.insert_jobs([cancelled, reclaimed, malformed], now)
    doomed, anyway, third = new(), new(), new()
    await store.insert_with_parents(
        [doomed, anyway, third],
        [
            Edge(cancelled.id, doomed.id),
            Edge(cancelled.id, anyway.id, run_on_failure=True),
            Edge(reclaimed.id, anyway.id, run_on_failure=True),
            Edge(malformed.id, third.id),
        ],
        now,
    )
    assert await store.cancel(cancelled.id, "stop", now)
    assert await _status(store, doomed.id) is JobStatus.CANCELLED
    assert (await store.get_job(anyway.id)).parents_left == 1  # type: ignore[union-attr]
    await store.claim(claim([reclaimed.id], "tok", now=now, lease=1))
    later = now + 10
    assert await store.reclaim(
        [Reclaim(reclaimed.id, "tok", JobStatus.FAILED, "stalled")], later, later
    ) == {reclaimed.id}
    rec = await store.get_job(anyway.id)
    assert rec is not None and rec.status is JobStatus.TODO and rec.parents_left == 0
    assert await store.fail_unclaimed(malformed.id, "malformed", later)
    assert await _status(store, third.id) is JobStatus.CANCELLED


async def test_purges_take_the_edges_of_the_jobs_they_delete(store: JobStore) -> None:
    now = now_us()
    a, child = new(), new()
    await store.insert_with_parents([a, child], [Edge(a.id, child.id)], now)
    await _run(store, [a], JobStatus.DONE, now)
    await _run(store, [child], JobStatus.DONE, now)
    assert await store.parent_results(child.id) != []
    assert await store.purge_finished("q", now + 1) == 2
    assert await store.parent_results(child.id) == []
    b, waits = new(), new()
    await store.insert_with_parents([b, waits], [Edge(b.id, waits.id)], now)
    assert await store.purge_queue("q") == 2
    assert await store.parent_results(waits.id) == []
    if isinstance(store, Store):  # the deps table holds no row of them
        assert (await store.db.fetch(*store.deps.count()))[0][0] == 0
    else:
        assert store._deps.count() == 0  # type: ignore[attr-defined]


async def test_a_waiting_job_cancelled_takes_its_own_dependants_along(store: JobStore) -> None:
    now = now_us()
    a, b, c = new(), new(), new()
    await store.insert_with_parents([a, b, c], [Edge(a.id, b.id), Edge(b.id, c.id)], now)
    assert await store.cancel(b.id, "not needed", now)
    assert await _status(store, b.id) is JobStatus.CANCELLED
    assert await _status(store, c.id) is JobStatus.CANCELLED
    # its parent still runs and finishes; nothing is released
    assert await _run(store, [a], JobStatus.DONE, now) == []
    assert await store.cancel_jobs("q", [c.id], "again", now) == set()
