"""The ``JobStore`` contract of progress and tags: progress fenced by the lease token,
tags stored with the job (its ``tags`` column and the tags table) and found by tag with
the other filters. One suite over the memory, SQLite, MariaDB and PostgreSQL stores."""

from __future__ import annotations

from typing import Any

from aqueue._ids import now_us
from aqueue._models import JobStatus
from aqueue._store.base import JobStore
from aqueue._store.values import Finish, JobQuery

from .helpers import claim, new


async def test_progress_is_written_only_under_the_runs_token(store: JobStore) -> None:
    now = now_us()
    j = new()
    await store.insert_jobs([j], now)
    assert not await store.set_progress(j.id, "tok", 0.1, "not running yet")
    await store.claim(claim([j.id], "tok", now=now))
    assert await store.set_progress(j.id, "tok", 0.4, "resized 40 of 100")
    assert not await store.set_progress(j.id, "other", 0.9, "a stale run")
    rec = await store.get_job(j.id)
    assert rec is not None
    assert (rec.progress, rec.progress_message) == (0.4, "resized 40 of 100")
    assert await store.set_progress(j.id, "tok", 1.0, None)
    await store.finish([Finish(j.id, "tok", JobStatus.DONE, result="1")], now + 1)
    assert not await store.set_progress(j.id, "tok", 0.5, "after the finish")
    rec = await store.get_job(j.id)
    assert rec is not None and rec.status is JobStatus.DONE
    assert (rec.progress, rec.progress_message) == (1.0, None)


async def test_tags_are_stored_and_found_with_the_other_filters(store: JobStore) -> None:
    now = now_us()
    a = new()._replace(tags=("customer:42", "resize"))
    b = new()._replace(tags=("customer:42",))
    c = new()._replace(tags=("customer:7",))
    plain = new()
    other_queue = new(queue="q2")._replace(tags=("customer:42",))
    assert await store.insert_jobs([a, b, c, plain, other_queue], now) == [
        a.id,
        b.id,
        c.id,
        plain.id,
        other_queue.id,
    ]
    rec = await store.get_job(a.id)
    assert rec is not None and rec.tags == "customer:42,resize"
    rec = await store.get_job(plain.id)
    assert rec is not None and rec.tags is None

    async def found(**query: object) -> list[str]:
        return [r.id for r in await store.find_jobs(JobQuery("q", **query), 50)]  # type: ignore[arg-type]

    newest_first = sorted([a.id, b.id], reverse=True)
    assert await found(tag="customer:42") == newest_first
    assert await found(tag="resize") == [a.id]
    assert await found(tag="customer:1") == []
    await store.claim(claim([b.id], "tok", now=now))
    assert await found(tag="customer:42", statuses=(JobStatus.RUNNING,)) == [b.id]
    assert await found(tag="customer:42", statuses=(JobStatus.TODO,)) == [a.id]
    assert await found(tag="customer:42", before_id=newest_first[0]) == newest_first[1:]
    others = await store.find_jobs(JobQuery("q2", tag="customer:42"), 50)
    assert [r.id for r in others] == [other_queue.id]


async def test_an_explicit_id_enqueued_again_keeps_one_job_and_its_tags(store: JobStore) -> None:
    now = now_us()
    first = new(job_id="tagged-once")._replace(tags=("t1",))
    assert await store.insert_jobs([first], now) == [first.id]
    assert await store.insert_jobs([first], now + 1) == [first.id]
    found = await store.find_jobs(JobQuery("q", tag="t1"), 50)
    assert [r.id for r in found] == [first.id]


async def test_a_job_skipped_for_its_unique_key_gets_no_tags(store: JobStore) -> None:
    now = now_us()
    holder = new(unique_key="k")._replace(tags=("a",))
    dup = new(unique_key="k")._replace(tags=("b",))
    assert await store.insert_jobs([holder], now) == [holder.id]
    assert await store.insert_jobs([dup], now + 1) == [holder.id]
    assert await store.find_jobs(JobQuery("q", tag="b"), 50) == []
    assert [r.id for r in await store.find_jobs(JobQuery("q", tag="a"), 50)] == [holder.id]


async def test_deleted_and_purged_jobs_leave_no_tags(store: JobStore) -> None:
    now = now_us()
    done, running, todo, purged = (new()._replace(tags=("c:1", f"k{i}")) for i in range(4))
    await store.insert_jobs([done, running, todo, purged], now)
    await store.claim(claim([done.id, running.id, purged.id], "tok", now=now))
    await store.finish(
        [
            Finish(done.id, "tok", JobStatus.DONE, result="1"),
            Finish(purged.id, "tok", JobStatus.DONE, result="1"),
        ],
        now + 1,
    )
    # A running job is not deleted, and keeps its tags.
    assert await store.delete_jobs("q", [done.id, running.id]) == 1
    assert await store.purge_finished("q", now + 10) == 1
    found = await store.find_jobs(JobQuery("q", tag="c:1"), 50)
    assert sorted(r.id for r in found) == sorted([running.id, todo.id])
    if hasattr(store, "tags"):  # the SQL store: no tag row is left behind
        sql_store: Any = store
        rows = await sql_store._fetch(
            "t", f"SELECT job_id FROM {sql_store.tags.tags} ORDER BY job_id", []
        )
        expected = sorted([running.id, running.id, todo.id, todo.id])
        assert sorted(str(r[0]) for r in rows) == expected
    await store.purge_queue("q")
    assert await store.find_jobs(JobQuery("q", tag="c:1"), 50) == []
    if hasattr(store, "tags"):
        assert await sql_store._fetch("t", f"SELECT job_id FROM {sql_store.tags.tags}", []) == []


async def test_tag_in_tags_jobs_inserted_by_another_form(store: JobStore) -> None:
    """``aqueue._store.tags.tag_in``: for an insert that does not write tags itself (the
    jobs with parents), in its own transaction. SQL stores only."""
    if not hasattr(store, "db"):
        return
    from aqueue._store.tags import tag_in

    sql_store: Any = store
    now = now_us()
    jobs = [new()._replace(tags=("w", "x")), new()._replace(tags=("w",)), new()]
    await store.insert_jobs([j._replace(tags=()) for j in jobs], now)
    await sql_store.db.transaction(lambda tx: tag_in(tx, sql_store.tags, jobs))
    found = await store.find_jobs(JobQuery("q", tag="w"), 50)
    assert sorted(r.id for r in found) == sorted(j.id for j in jobs[:2])
    assert [r.tags for r in found if r.id == jobs[0].id] == ["w,x"]


async def test_jobs_with_parents_are_tagged_in_their_transaction(store: JobStore) -> None:
    from aqueue._store.values import Edge

    now = now_us()
    parent = new()._replace(tags=("flow:1",))
    child = new()._replace(tags=("flow:1", "step:2"))
    await store.insert_with_parents([parent, child], [Edge(parent.id, child.id)], now)
    found = await store.find_jobs(JobQuery("q", tag="flow:1"), 50)
    assert sorted(r.id for r in found) == sorted([parent.id, child.id])
    waiting = await store.find_jobs(JobQuery("q", tag="step:2", statuses=(JobStatus.WAITING,)), 50)
    assert [(r.id, r.tags) for r in waiting] == [(child.id, "flow:1,step:2")]
