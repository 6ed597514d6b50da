"""Bulk actions on jobs named by id or by filter: ``retry`` (back to todo with fresh
attempts, never a running job), ``cancel`` (jobs not finished) and ``purge`` (delete
finished jobs older than a duration, or the jobs matching a filter; never a running
one). Each has ``--dry-run``: it reads the jobs the action names and counts those it
would change, and changes nothing.

A dry run and the action that follows it may differ by the jobs that changed in
between: the action itself judges each job by its own compare-and-set.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import click

from .._app import Queue
from .._models import JobRecord, JobStatus
from .._store.values import JobQuery
from .common import admin, load_queue
from .filters import Filters, filter_options
from .options import duration
from .render import json_option, print_json, stderr

PAGE = 500
FINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

Predicate = Callable[[JobRecord], bool]


def _limit_option(fn: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        help="At most this many jobs of those the filter matches [default: all].",
    )(fn)


def _dry_run_option(fn: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--dry-run", is_flag=True, help="Count the jobs that would change; change nothing."
    )(fn)


def _not_running(rec: JobRecord) -> bool:
    return rec.status is not JobStatus.RUNNING


def _not_finished(rec: JobRecord) -> bool:
    return not rec.status.is_final


def _target(queue: Queue, ids: Sequence[str], filters: Filters) -> JobQuery | None:
    """The filter's query, or None when the command names ids; a usage error when it
    names both or neither (an empty filter would name every job of the queue)."""
    if ids and filters.given:
        raise click.UsageError("give job ids or filters, not both")
    if not ids and not filters.given:
        raise click.UsageError(
            "give job ids, or at least one filter (--status, --task, --id, --text, "
            "--since, --until)"
        )
    return filters.query(queue) if filters.given else None


async def _split_ids(q: Queue, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """(ids of this queue's jobs, the others): an id is acted on only in its own queue
    (several queues may share a table, and a job retried here would be sent to this
    queue's Redis lists)."""
    be = await q._backend()
    own: list[str] = []
    missing: list[str] = []
    for jid in dict.fromkeys(ids):
        rec = await be.store.get_job(jid)
        (own if rec is not None and rec.queue == q.name else missing).append(jid)
    return own, missing


async def _pages(
    q: Queue, ids: Sequence[str], query: JobQuery | None, limit: int | None
) -> AsyncIterator[list[JobRecord]]:
    """The jobs an action names, a page at a time (as the action walks them)."""
    if query is None:
        be = await q._backend()
        records = []
        for jid in ids:
            rec = await be.store.get_job(jid)
            if rec is not None and rec.queue == q.name:
                records.append(rec)
        yield records
        return
    left = limit
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        page = await q.find_jobs(query, size)
        if not page:
            return
        yield page
        if left is not None:
            left -= len(page)
        if len(page) < size:
            return
        query = dataclasses.replace(query, before_id=page[-1].id)


async def _count(
    q: Queue, ids: Sequence[str], query: JobQuery | None, limit: int | None, would: Predicate
) -> tuple[int, int]:
    """(jobs named, jobs the action would change)."""
    named = changed = 0
    async for page in _pages(q, ids, query, limit):
        named += len(page)
        changed += sum(1 for r in page if would(r))
    return named, changed


def _report(
    queue: Queue,
    action: str,
    as_json: bool,
    dry_run: bool,
    outcome: tuple[int, int] | int,
    past: str,
    missing: Sequence[str] = (),
) -> None:
    """Print the outcome; ids not found in the queue are named on stderr (and in the
    JSON document), and make the exit code 1."""
    doc: dict[str, Any] = {"action": action, "dry_run": dry_run}
    if dry_run:
        assert isinstance(outcome, tuple)
        doc["matched"], doc["would"] = outcome
        text = f"dry run: {action} would change {doc['would']} of {doc['matched']} matching job(s)"
    else:
        assert isinstance(outcome, int)
        doc["changed"] = outcome
        text = f"{past} {outcome} job(s)"
    if missing:
        doc["not_found"] = list(missing)
    if as_json:
        print_json(doc)
    else:
        click.echo(text)
    for jid in missing:
        stderr(f"aqueue: no job {jid} in queue {queue.name}")
    if missing:
        sys.exit(1)


@click.command()
@click.argument("app")
@click.argument("job_ids", nargs=-1)
@filter_options
@_limit_option
@_dry_run_option
@json_option
def retry(
    app: str,
    job_ids: tuple[str, ...],
    filters: Filters,
    limit: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Put jobs back to todo with fresh attempts (by id, or every job matching the
    filters), and into Redis. A running job is left alone (repush --force takes it)."""
    queue = load_queue(app)
    query = _target(queue, job_ids, filters)

    missing: list[str] = []

    async def go(q: Queue) -> tuple[int, int] | int:
        ids: Sequence[str] = job_ids
        if query is None:
            ids, missing[:] = await _split_ids(q, job_ids)
        if dry_run:
            return await _count(q, ids, query, limit, _not_running)
        if query is None:
            return await q.retry_jobs(ids) if ids else 0
        return await q.retry_jobs(query=query, limit=limit)

    _report(queue, "retry", as_json, dry_run, admin(queue, go), "retried", missing)


@click.command()
@click.argument("app")
@click.argument("job_ids", nargs=-1)
@filter_options
@_limit_option
@click.option("--reason", default="cancelled by an operator", show_default=True)
@_dry_run_option
@json_option
def cancel(
    app: str,
    job_ids: tuple[str, ...],
    filters: Filters,
    limit: int | None,
    reason: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Cancel jobs that have not finished (by id, or every job matching the filters):
    a queued one never runs, a running one is cancelled at its runner's next renewal."""
    queue = load_queue(app)
    query = _target(queue, job_ids, filters)

    missing: list[str] = []

    async def go(q: Queue) -> tuple[int, int] | int:
        ids: Sequence[str] = job_ids
        if query is None:
            ids, missing[:] = await _split_ids(q, job_ids)
        if dry_run:
            return await _count(q, ids, query, limit, _not_finished)
        if query is None:
            return await q.cancel_jobs(ids, reason=reason) if ids else 0
        return await q.cancel_jobs(query=query, limit=limit, reason=reason)

    _report(queue, "cancel", as_json, dry_run, admin(queue, go), "cancelled", missing)


def _finished_before(cutoff_us: int) -> Predicate:
    return lambda r: r.finished_at is not None and r.finished_at < cutoff_us


@click.command()
@click.argument("app")
@click.option(
    "--older-than",
    callback=lambda c, p, v: None if v is None else duration(c, p, v),
    help="Finished jobs that finished longer ago than this (3600, 30m, 12h, 7d).",
)
@filter_options
@_limit_option
@_dry_run_option
@json_option
def purge(
    app: str,
    older_than: float | None,
    filters: Filters,
    limit: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete jobs with their results: those that finished more than --older-than ago,
    or those matching the filters (both: the finished ones among them). A running job
    is never deleted."""
    if older_than is None and not filters.given:
        raise click.UsageError("give --older-than, or at least one filter")
    queue = load_queue(app)
    cutoff = int((time.time() - (older_than or 0.0)) * 1e6)

    async def go(q: Queue) -> tuple[int, int] | int:
        if older_than is not None and not filters.given and limit is None and not dry_run:
            return await q.purge_finished(older_than)
        if older_than is None:
            query = filters.query(q)
            if dry_run:
                return await _count(q, (), query, limit, _not_running)
            return await q.delete_jobs(query=query, limit=limit)
        # A job finishes after it is created: those that finished before the cutoff
        # were created before it too, so the pages stop there.
        query = filters.query(q)
        statuses = tuple(s for s in query.statuses or FINAL if s in FINAL)
        until = cutoff if query.created_to is None else min(cutoff, query.created_to)
        query = dataclasses.replace(query, statuses=statuses, created_to=until)
        if not statuses:
            return (0, 0) if dry_run else 0
        if dry_run:
            return await _count(q, (), query, limit, _finished_before(cutoff))
        deleted = 0
        async for page in _pages(q, (), query, limit):
            ids = [r.id for r in page if r.finished_at is not None and r.finished_at < cutoff]
            if ids:
                deleted += await q.delete_jobs(ids)
        return deleted

    _report(queue, "purge", as_json, dry_run, admin(queue, go), "deleted")
