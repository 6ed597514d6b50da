"""``db``: create or migrate the jobs table of an app's queue."""

from __future__ import annotations

import click

from .._app import Queue
from .common import admin, load_queue


@click.group()
def db() -> None:
    """Create or migrate the jobs table."""


@db.command("init")
@click.argument("app")
def db_init(app: str) -> None:
    """Create the jobs table of APP's queue when missing."""
    queue = load_queue(app)

    async def go(q: Queue) -> int:
        be = await q._backend()
        return await be.store.init_schema()

    version = admin(queue, go)
    click.echo(f"table {queue.table}: schema version {version}")


@db.command("upgrade")
@click.argument("app")
def db_upgrade(app: str) -> None:
    """Migrate the jobs table of APP's queue to this aqueue's schema version."""
    queue = load_queue(app)
    queue.init_db = False

    async def go(q: Queue) -> tuple[int, int]:
        be = await q._backend()
        return await be.store.upgrade_schema()

    before, after = admin(queue, go)
    click.echo(f"table {queue.table}: schema version {before} -> {after}")
