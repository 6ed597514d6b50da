"""What docs/job-control.md and the README promise, checked: job options' names, the
six-field cron syntax, and the documented limits of ids, keys and table names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aqueue import ConfigurationError, Options, Queue
from aqueue._cron import Schedule, validate_cron
from aqueue._models import validate_identifier

S = 1_000_000


def _queue() -> Queue:
    # never connected: options are checked before anything reaches a server
    return Queue("docs", database_url="sqlite+aiosqlite:///unused.db", redis_url="redis://x")


def test_a_misspelt_option_names_itself_and_the_valid_ones() -> None:
    queue = _queue()

    @queue.task
    async def welcome(user_id: int) -> None: ...

    for make in (lambda: welcome.options(dealy=5), lambda: queue.options(dealy=5)):
        with pytest.raises(ConfigurationError) as info:
            make()
        text = str(info.value)
        assert "dealy" in text
        for valid in ("delay", "run_at", "priority", "timeout", "expires", "job_id"):
            assert valid in text


def test_timeout_and_expires_are_job_options() -> None:
    queue = _queue()

    @queue.task
    async def welcome(user_id: int) -> None: ...

    opts = welcome.options(timeout=10, expires=60, delay=5).opts
    assert (opts.timeout, opts.expires) == (10, 60)
    # expires counts from the job's start time (here: now + delay)
    assert opts.run_options(100 * S) == {"timeout": 10, "expires": 165 * S}
    with pytest.raises(ConfigurationError):
        Options.of(timeout=0)


def test_six_field_cron_has_seconds_first() -> None:
    pytest.importorskip("cronsim")
    validate_cron("*/15 * * * * *")  # every 15 seconds
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * S)
    every_15s = list(Schedule("t", cron="*/15 * * * * *").ticks(start, start + 60 * S))
    assert [(t - start) // S for t in every_15s] == [15, 30, 45, 60]
    # "30 0 * * * *": second 30 of minute 0 of every hour
    hourly = list(Schedule("t", cron="30 0 * * * *").ticks(start, start + 7200 * S))
    assert [(t - start) // S for t in hourly] == [30, 3630]
    with pytest.raises(ConfigurationError):
        validate_cron("* * * * * * * *")


def test_the_documented_limits() -> None:
    assert Options(job_id="j" * 36).job_id
    assert Options(unique_key="k" * 160).unique_key
    assert validate_identifier("t" * 48, "table name")
    for bad in (
        lambda: Options(job_id="j" * 37),
        lambda: Options(unique_key="k" * 161),
        lambda: validate_identifier("t" * 49, "table name"),
        lambda: Queue("q" * 129),
    ):
        with pytest.raises(ConfigurationError):
            bad()
    assert Queue("q" * 128).name
