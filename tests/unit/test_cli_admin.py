"""The operators' CLI, pure parts: time bounds, the job document (no lease token),
terminal-safe cells, plain tables without rich, URL redaction, schedule ticks, the
``top`` frame."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
import pytest

from aqueue import JobRecord, JobStatus
from aqueue._cli.common import redact
from aqueue._cli.filters import Filters, parse_moment
from aqueue._cli.monitor import _plain_frame
from aqueue._cli.render import call_text, clean, have_rich, job_doc, plain_table, print_table
from aqueue._cli.snapshot import QueueView, RunnerRow, next_tick, previous_ticks
from aqueue._cron import Schedule

NOW = datetime(2026, 12, 4, 12, 30, 15, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("1h", NOW - 3600),
        ("90s", NOW - 90),
        ("7d", NOW - 7 * 86400),
        ("2026-12-04T12:00:00Z", NOW - 1815),
        ("2026-12-04T12:00:00", NOW - 1815),  # no zone: UTC
        ("2026-12-04T13:00:00+01:00", NOW - 1815),
        ("2026-12-04", NOW - 12 * 3600 - 1815),
    ],
)
def test_parse_moment(text: str, expected: float) -> None:
    assert parse_moment(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "", "1x", "-5m", "2026-13-01"])
def test_parse_moment_refuses(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_moment(text, NOW)


def test_filters_given() -> None:
    assert not Filters().given
    assert Filters(statuses=("failed",)).given
    assert Filters(since=0.0).given


def record(**kw: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": "j1",
        "queue": "q",
        "task": "t",
        "payload": '{"a":[1],"k":{"x":"y"}}',
        "status": JobStatus.RUNNING,
        "priority": 0,
        "attempts": 1,
        "stalls": 0,
        "max_attempts": 3,
        "run_at": 1_000_000,
        "lease_owner": "host-1-abc",
        "lease_token": "SECRET-TOKEN",
        "leased_until": 2_000_000,
        "result": None,
        "error": None,
        "unique_key": None,
        "created_at": 1_000_000,
        "updated_at": 1_500_000,
        "finished_at": None,
    }
    fields.update(kw)
    return JobRecord(**fields)  # type: ignore[arg-type]


def test_job_doc_never_has_the_lease_token() -> None:
    doc = job_doc(record())
    assert "lease_token" not in doc
    assert "SECRET-TOKEN" not in repr(doc)
    assert doc["args"] == [1] and doc["kwargs"] == {"x": "y"}
    assert doc["created_at"] == "1970-01-01T00:00:01Z"
    assert doc["leased_until"] == "1970-01-01T00:00:02Z"
    assert doc["finished_at"] is None
    odd = job_doc(record(payload="not json"))
    assert odd["payload"] == "not json" and odd["args"] is None


def test_call_text() -> None:
    assert (
        call_text("resize", {"a": ["a.png"], "k": {"width": 640}}) == 'resize("a.png", width=640)'
    )
    assert call_text("t", {"a": [], "k": {}}) == "t()"
    assert call_text("t", "odd") == 't(<payload "odd">)'


def test_clean_escapes_control_characters() -> None:
    assert clean("a\x1b[31mb\x07") == "a\\x1b[31mb\\x07"
    assert clean("line1\nline2\ttab") == "line1\nline2\ttab"
    assert clean("line1\r\nline2", one_line=True) == "line1\\r\\nline2"


def test_plain_table_aligns_columns() -> None:
    lines = plain_table("title", ["id", "status"], [["a", "done"], ["longer-id", "x"]])
    assert lines == ["title", "id         status", "a          done", "longer-id  x"]


def test_print_table_without_rich(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    assert not have_rich()
    print_table(None, ["id", "args"], [["j1", "[bold]x[/] \x1b[2J"], ["j2", None]])
    out = capsys.readouterr().out
    assert out.splitlines() == ["id  args", "j1  [bold]x[/] \\x1b[2J", "j2  -"]


def test_print_table_with_rich_shows_markup_literally(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("rich")
    print_table("t", ["args"], [["[bold]x[/] <script>"]])
    assert "[bold]x[/] <script>" in capsys.readouterr().out


def test_redact() -> None:
    assert (
        redact("cannot reach mysql://u:p%40ss@db:3306/x") == "cannot reach mysql://u:***@db:3306/x"
    )
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact("redis://:pw@h/0") == "redis://:***@h/0"


def test_schedule_ticks() -> None:
    now = int(NOW * 1_000_000)
    every = Schedule("t", every=3600)
    hour = int(datetime(2026, 12, 4, 12, tzinfo=UTC).timestamp() * 1_000_000)
    assert previous_ticks(every, now, 2) == [hour, hour - 3_600_000_000]
    assert next_tick(every, now) == hour + 3_600_000_000
    nightly = Schedule("t", cron="0 3 * * *")
    pytest.importorskip("cronsim")
    three = int(datetime(2026, 12, 4, 3, tzinfo=UTC).timestamp() * 1_000_000)
    assert previous_ticks(nightly, now, 2) == [three, three - 86_400_000_000]
    assert next_tick(nightly, now) == three + 86_400_000_000


def test_plain_top_frame() -> None:
    view = QueueView(
        "q",
        {"todo": 2, "running": 1, "done": 5, "failed": 0, "cancelled": 0},
        3,
        1,
        12.5,
        [
            RunnerRow("host-1-a", True, 1, 6, 5, 0, 0, 1.0),
            RunnerRow("host-2-\x1bb", False, None, None, None, None, None, None),
        ],
    )
    lines = _plain_frame(view).splitlines()
    assert lines[0].startswith("queue q")
    assert lines[1] == "todo 2  running 1  done 5  failed 0  cancelled 0"
    assert lines[2] == "redis ready 3, delayed 1    backlog age 12.5s    runners alive 1"
    assert lines[4].split() == [
        "runner",
        "alive",
        "in",
        "flight",
        "executed",
        "done",
        "failed",
        "retried",
        "beat",
    ]
    assert lines[5].split() == ["host-1-a", "yes", "1", "6", "5", "0", "0", "1.0s", "ago"]
    assert lines[6].split() == ["host-2-\\x1bb", "no", *["-"] * 6]
