"""Reading and repairing jobs: ``stats`` (counts by status and Redis lengths),
``status`` (jobs by id) and ``repush`` (jobs back to todo and into Redis)."""

from __future__ import annotations

import sys
from typing import Any

import click

from .._app import Queue
from .._errors import AqueueError
from .common import admin, fail, load_queue


@click.command()
@click.argument("app")
def stats(app: str) -> None:
    """Job counts by status, and Redis list lengths."""
    queue = load_queue(app)

    async def go(q: Queue) -> tuple[dict[Any, int], tuple[int, int]]:
        be = await q._backend()
        return await q.counts(), await be.broker.lengths()

    counts, (ready, delayed) = admin(queue, go)
    click.echo(f"queue {queue.name}")
    for status, n in counts.items():
        click.echo(f"  {status.value:<10}{n:>10}")
    click.echo(f"  redis ready {ready}, delayed {delayed}")


@click.command()
@click.argument("app")
@click.argument("job_ids", nargs=-1, required=True)
def status(app: str, job_ids: tuple[str, ...]) -> None:
    """Show jobs by id."""
    queue = load_queue(app)

    async def go(q: Queue) -> list[str]:
        lines = []
        for jid in job_ids:
            try:
                rec = await q.job(jid).info()
            except AqueueError as exc:
                lines.append(f"{jid}  {exc}")
                continue
            lines.append(
                f"{rec.id}  {rec.status.value}  task={rec.task} attempts={rec.attempts}/"
                f"{rec.max_attempts}" + (f" error={rec.error[:200]}" if rec.error else "")
            )
        return lines

    for line in admin(queue, go):
        click.echo(line)


@click.command()
@click.argument("app")
@click.argument("job_ids", nargs=-1)
@click.option(
    "--status",
    "by_status",
    type=click.Choice(["failed", "done", "cancelled", "todo"]),
    help="Repush every job of the queue in this status (up to --limit).",
)
@click.option("--limit", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--force", is_flag=True, help="Also repush running jobs (revokes their lease).")
def repush(
    app: str, job_ids: tuple[str, ...], by_status: str | None, limit: int, force: bool
) -> None:
    """Force jobs back to todo and into Redis, by id or by status."""
    if not job_ids and not by_status:
        fail("give job ids or --status")
    queue = load_queue(app)

    async def go(q: Queue) -> list[str]:
        ids = list(job_ids)
        if by_status:
            ids += await q.job_ids(by_status, limit)
        lines = []
        for jid in ids:
            try:
                await q.repush(jid, force=force)
                lines.append(f"{jid}  repushed")
            except AqueueError as exc:
                lines.append(f"{jid}  {exc}")
        return lines

    lines = admin(queue, go)
    for line in lines:
        click.echo(line)
    done = sum(line.endswith("  repushed") for line in lines)
    click.echo(f"repushed {done} of {len(lines)} job(s)")
    if done < len(lines):
        sys.exit(1)
