"""``embedded``: the embedded default's private Redis."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group()
def embedded() -> None:
    """The embedded default's private Redis (under $AQUEUE_HOME, else ./.aqueue)."""


@embedded.command("stop")
@click.option("--home", type=click.Path(file_okay=False), default=None, help="Its directory.")
def embedded_stop(home: str | None) -> None:
    """Stop the embedded Redis (jobs stay in SQLite; the next use starts it again)."""
    from .._embedded import DEFAULT_HOME, ENV_HOME, stop_embedded_redis

    path = Path(home or os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()
    if stop_embedded_redis(path):
        click.echo(f"stopped the embedded Redis under {path}")
    else:
        click.echo(f"no embedded Redis running under {path}")
