"""Tags and progress on the SQL store.

A batch with tagged jobs is inserted in one transaction: the job rows (with their
``tags`` display column) and one row per tag in ``<table>_tags``, all or none, on every
dialect (MySQL/MariaDB and PostgreSQL: ``BEGIN`` ... ``COMMIT`` on one connection;
SQLite: ``BEGIN IMMEDIATE`` under its write lock). A batch without tags keeps the one
statement of a plain insert. When the batch may hit existing keys (explicit ids, unique
keys), the tag rows are written for the jobs present after the insert, read in the same
transaction (a job skipped for its unique key gets none).
"""

from __future__ import annotations

from collections.abc import Sequence, Set

from .._models import NewJob
from .driver import DriverConn
from .errors import db_error
from .executor import Executor, insert_failure
from .sql.tags import JOBS_PER_INSERT, TAGS_PER_INSERT, TagQueries


async def insert_tagged(
    db: Executor, q: TagQueries, jobs: Sequence[NewJob], now: int, *, careful: bool
) -> None:
    """Insert ``jobs`` and their tag rows in one transaction: ``StoreError`` when it
    certainly did not commit, ``EnqueueOutcomeUnknownError`` (naming the first job) when
    it may have (as ``Executor.insert``)."""

    async def write(tx: DriverConn) -> None:
        for k in range(0, len(jobs), JOBS_PER_INSERT):
            await tx.execute(*q.insert_jobs(jobs[k : k + JOBS_PER_INSERT], now, careful=careful))
        tagged = [j for j in jobs if j.tags]
        if careful:
            present: set[str] = set()
            for k in range(0, len(tagged), JOBS_PER_INSERT):
                ids = [j.id for j in tagged[k : k + JOBS_PER_INSERT]]
                present |= {str(r[0]) for r in await tx.fetch(*q.present(ids))}
            tagged = [j for j in tagged if j.id in present]
        rows = [(j.queue, tag, j.id) for j in tagged for tag in j.tags]
        for k in range(0, len(rows), TAGS_PER_INSERT):
            await tx.execute(*q.insert_tags(rows[k : k + TAGS_PER_INSERT]))

    try:
        await db.transaction(write)
    except Exception as exc:
        if not db_error(exc):
            raise
        raise insert_failure(exc, jobs[0].id, len(jobs)) from exc


async def tag_in(tx: DriverConn, q: TagQueries, jobs: Sequence[NewJob]) -> None:
    """Tag ``jobs`` just inserted in the open transaction ``tx`` without their ``tags``
    column (an insert of another form, e.g. jobs with parents): the column, then the tag
    rows, in that transaction."""
    by_shown: dict[str, list[str]] = {}
    for j in jobs:
        if j.tags:
            by_shown.setdefault(",".join(j.tags), []).append(j.id)
    for shown_tags, ids in by_shown.items():
        for k in range(0, len(ids), JOBS_PER_INSERT):
            await tx.execute(*q.set_shown(shown_tags, ids[k : k + JOBS_PER_INSERT]))
    rows = [(j.queue, tag, j.id) for j in jobs for tag in j.tags]
    for k in range(0, len(rows), TAGS_PER_INSERT):
        await tx.execute(*q.insert_tags(rows[k : k + TAGS_PER_INSERT]))


async def set_progress(
    db: Executor, q: TagQueries, job_id: str, token: str, progress: float, message: str | None
) -> bool:
    sql, params = q.set_progress(job_id, token, progress, message)
    return await db.run("recording progress", lambda: db.execute(sql, params)) > 0


async def tags_of(db: Executor, q: TagQueries, ids: Sequence[str]) -> dict[str, list[str]]:
    """The tags of the tagged jobs among ``ids`` (read before they are deleted)."""
    sql, params = q.tags_of(ids)
    rows = await db.run("reading tags", lambda: db.fetch(sql, params))
    return {str(r[0]): str(r[1]).split(",") for r in rows}


async def forget(
    db: Executor,
    q: TagQueries,
    queue: str,
    tagged: dict[str, list[str]],
    keep: Set[str] = frozenset(),
) -> None:
    """Delete the tag rows of deleted jobs (``tagged``, from :func:`tags_of`; ``keep``:
    those not deleted after all). After the jobs' own delete: a failure leaves tag rows
    of jobs that are gone, which a lookup by tag never shows (it joins the jobs)."""
    ids = sorted(i for i in tagged if i not in keep)
    if not ids:
        return
    tags = sorted({t for i in ids for t in tagged[i]})
    sql, params = q.delete_tags(queue, tags, ids)
    await db.run("deleting tags", lambda: db.execute(sql, params))


async def purge(db: Executor, q: TagQueries, queue: str) -> None:
    sql, params = q.purge_tags(queue)
    await db.run("purging tags", lambda: db.execute(sql, params))
