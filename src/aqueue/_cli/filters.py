"""The job filter the admin commands share (``jobs list``, ``retry``, ``cancel``,
``purge``): the options of the operators' API (``Queue.job_query``) and the time
bounds, given as ISO 8601 (a time without a zone is UTC) or as a duration back from now
(``90s``, ``30m``, ``1h``, ``7d``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from .._app import Queue
from .._errors import ConfigurationError
from .._models import JobStatus
from .._store.values import JobQuery
from .options import parse_duration

F = TypeVar("F", bound=Callable[..., Any])

STATUSES = [s.value for s in JobStatus]


def parse_moment(value: str, now: float | None = None) -> float:
    """UNIX seconds of ``value``: ISO 8601 (no zone: UTC), ``now``, or a duration
    before now (``1h``: an hour ago)."""
    text = value.strip()
    now = time.time() if now is None else now
    if text.lower() == "now":
        return now
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    try:
        seconds = parse_duration(text, forever=False)
    except click.BadParameter:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 time (2026-01-31T12:00:00, UTC unless a "
            "zone is given) nor a duration back from now (90s, 30m, 1h, 7d)"
        ) from None
    assert seconds is not None
    return now - seconds


def _moment(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    return None if value is None else parse_moment(value)


@dataclass(frozen=True)
class Filters:
    """What the filter options gave."""

    statuses: tuple[str, ...] = ()
    task: str | None = None
    job_id: str | None = None
    text: str | None = None
    since: float | None = None
    until: float | None = None

    @property
    def given(self) -> bool:
        return bool(self.statuses or self.task or self.job_id or self.text) or (
            self.since is not None or self.until is not None
        )

    def query(self, queue: Queue, before: str | None = None) -> JobQuery:
        try:
            return queue.job_query(
                status=self.statuses or None,
                task=self.task,
                job_id=self.job_id,
                text=self.text,
                created_from=self.since,
                created_to=self.until,
                before_id=before,
            )
        except ConfigurationError as exc:
            raise click.UsageError(str(exc)) from None


def filter_options(fn: F) -> F:
    """The filter options; the command receives them as one ``filters`` argument."""
    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice(STATUSES),
            help="Jobs in this status (repeat for several).",
        ),
        click.option("--task", help="Jobs of this task (its registered name)."),
        click.option("--id", "job_id", help="The job with this id."),
        click.option("--text", help="Jobs whose arguments or error contain this (case sensitive)."),
        click.option(
            "--since",
            callback=_moment,
            help="Created at or after: ISO 8601 (UTC unless a zone is given) or a "
            "duration back from now (30m, 1h, 7d).",
        ),
        click.option("--until", callback=_moment, help="Created before (same forms as --since)."),
    ]

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        statuses: tuple[str, ...],
        task: str | None,
        job_id: str | None,
        text: str | None,
        since: float | None,
        until: float | None,
        **kwargs: Any,
    ) -> Any:
        filters = Filters(statuses, task, job_id, text, since, until)
        return fn(*args, filters=filters, **kwargs)

    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]
