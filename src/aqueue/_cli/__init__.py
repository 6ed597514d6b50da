"""``python -m aqueue``: run runners and administer queues.

The group is assembled here from one module per family of commands: ``worker`` (run),
``database`` (``db``: the jobs table), ``embedded_redis`` (``embedded``), ``jobs``
(stats, status, repush), and the operators' commands: ``listing`` (``jobs list``,
``jobs show``), ``actions`` (retry, cancel, purge) and ``monitor`` (runners, schedules,
top, health). ``common`` holds what they share (loading the app's queue, errors, running
a coroutine), ``options`` the duration options and the options that default to
``RunnerConfig``'s fields; ``filters`` (the job filter options), ``render`` (tables,
JSON) and ``snapshot`` (what the monitoring commands read) serve the operators'
commands. The commands are plain click commands added to the group, so no command
module imports this one.
"""

from __future__ import annotations

import click

from .actions import cancel, purge, retry
from .database import db
from .embedded_redis import embedded
from .jobs import repush, stats, status
from .listing import jobs
from .monitor import health, runners, schedules, top
from .web import web
from .worker import run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aqueue")
def cli() -> None:
    """aqueue: durable asyncio task queue (SQL + Redis)."""


for command in (run, db, embedded, stats, status, repush, jobs, retry, cancel, purge):
    cli.add_command(command)
for command in (runners, schedules, top, health):
    cli.add_command(command)
cli.add_command(web)


def main() -> None:
    cli(prog_name="python -m aqueue")
