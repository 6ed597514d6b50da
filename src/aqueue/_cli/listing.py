"""``jobs list`` (the jobs matching a filter, newest first, a page at a time) and
``jobs show`` (one job, everything but its lease token)."""

from __future__ import annotations

import json

import click

from .._app import Queue
from .._models import JobRecord
from .._serde import decode_error
from .common import admin, fail, load_queue
from .filters import Filters, filter_options
from .render import (
    call_text,
    clean,
    iso,
    job_doc,
    json_option,
    print_block,
    print_fields,
    print_json,
    print_table,
    short_time,
)


@click.group()
def jobs() -> None:
    """Find and inspect jobs."""


def _error_line(rec: JobRecord) -> str:
    if not rec.error:
        return ""
    kind, message, _ = decode_error(rec.error)
    return f"{kind}: {message}"[:80]


@jobs.command("list")
@click.argument("app")
@filter_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", help="The next page: the last id of the previous one.")
@json_option
def list_jobs(app: str, filters: Filters, limit: int, before: str | None, as_json: bool) -> None:
    """The jobs of APP's queue matching the filters, newest first."""
    queue = load_queue(app)
    query = filters.query(queue, before)

    async def go(q: Queue) -> list[JobRecord]:
        return await q.find_jobs(query, limit)

    records = admin(queue, go)
    next_before = records[-1].id if len(records) == limit else None
    if as_json:
        print_json(
            {
                "queue": queue.name,
                "jobs": [job_doc(r) for r in records],
                "next_before": next_before,
            }
        )
        return
    rows = [
        (
            r.id,
            r.status.value,
            r.task,
            f"{r.attempts}/{r.max_attempts}",
            short_time(r.created_at),
            _error_line(r),
        )
        for r in records
    ]
    columns = ["id", "status", "task", "attempts", "created (UTC)", "error"]
    print_table(f"queue {queue.name}: {len(records)} job(s)", columns, rows)
    if next_before:
        click.echo(f"more: --before {next_before}")


def _origin(queue: Queue, rec: JobRecord) -> str:
    if rec.id.startswith("cron-") and rec.task in queue.schedules:
        return "schedule tick"
    return "enqueued"


@jobs.command("show")
@click.argument("app")
@click.argument("job_id")
@json_option
def show(app: str, job_id: str, as_json: bool) -> None:
    """Everything about one job (but its lease token), with its error's traceback."""
    queue = load_queue(app)

    async def go(q: Queue) -> JobRecord | None:
        be = await q._backend()
        return await be.store.get_job(job_id)

    rec = admin(queue, go)
    if rec is None or rec.queue != queue.name:
        fail(f"no job {job_id} in queue {queue.name}", 1)
    doc = job_doc(rec)
    if as_json:
        print_json(doc)
        return
    kind, message, traceback = decode_error(rec.error) if rec.error else ("", "", "")
    fields = [
        ("id", rec.id),
        ("queue", rec.queue),
        ("task", rec.task),
        ("status", rec.status.value),
        ("origin", _origin(queue, rec)),
        ("attempts", f"{rec.attempts} of {rec.max_attempts}"),
        ("stalls", rec.stalls),
        ("priority", rec.priority),
        ("unique key", rec.unique_key),
        ("created", iso(rec.created_at)),
        ("run at", iso(rec.run_at)),
        ("updated", iso(rec.updated_at)),
        ("finished", iso(rec.finished_at)),
        ("lease owner", rec.lease_owner),
        ("leased until", iso(rec.leased_until)),
        ("error", f"{kind}: {message}" if rec.error else None),
    ]
    print_fields(f"job {rec.id}", fields)
    print_block("call", call_text(rec.task, doc["payload"]))
    if rec.result is not None:
        print_block("result", json.dumps(doc["result"], indent=2, ensure_ascii=False))
    if traceback:
        print_block("traceback", traceback)
    elif rec.error:
        print_block("error", clean(message))
