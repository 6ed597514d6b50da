"""Output of the admin commands: tables for people (rich when installed, aligned plain
text otherwise), one JSON document for scripts (``--json``), and the job as a document
(everything but the lease token).

rich is optional (``aqueue[progress]``): without it every command still works and prints
the same columns as plain text. Whatever a job carries (arguments, errors, task names) is
the application's data: it is shown as literal text, never as rich markup, and control
characters are escaped so that a payload cannot drive the operator's terminal.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from .._errors import SerializationError
from .._models import JobRecord
from .._serde import decode_payload

F = TypeVar("F", bound=Callable[..., Any])

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def have_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document (for scripts)."
    )(fn)


def clean(text: str, *, one_line: bool = False) -> str:
    """``text`` safe for a terminal: control characters (ESC, ...) shown as escapes."""
    if one_line:
        text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def iso(us: int | None) -> str | None:
    """A UNIX µs time as ISO 8601 UTC (``2026-12-04T20:57:59.123456Z``)."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def short_time(us: int | None) -> str:
    if us is None:
        return "-"
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.1f}{unit}"
    return f"{s:.1f}s"


def _parsed(text: str | None) -> Any:
    """A stored JSON text as data (kept as text if it is not JSON)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _payload(text: str | None) -> Any:
    """A stored payload as data, inflated if it was stored compressed (kept as text if
    it cannot be read)."""
    if text is None:
        return None
    try:
        return decode_payload(text)
    except (ValueError, SerializationError):
        return text


def arguments(payload: Any) -> tuple[list[Any], dict[str, Any]] | None:
    """The handler's ``(args, kwargs)`` from the stored payload (``{"a": …, "k": …}``)."""
    if isinstance(payload, dict) and isinstance(payload.get("a"), list):
        kwargs = payload.get("k")
        return payload["a"], kwargs if isinstance(kwargs, dict) else {}
    return None


def call_text(task: str, payload: Any) -> str:
    """The job as the call it makes: ``resize("a.png", width=640)`` (JSON values)."""
    parsed = arguments(payload)
    if parsed is None:
        return f"{task}(<payload {json.dumps(payload, ensure_ascii=False)}>)"
    args, kwargs = parsed
    parts = [json.dumps(a, ensure_ascii=False) for a in args]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items()]
    return f"{task}({', '.join(parts)})"


def job_doc(rec: JobRecord) -> dict[str, Any]:
    """The job as a JSON document: every column but the lease token (a credential:
    whoever holds it can record the job's outcome). ``payload`` is the stored one;
    ``args``/``kwargs`` what the handler receives."""
    payload = _payload(rec.payload)
    args, kwargs = arguments(payload) or (None, None)
    return {
        "id": rec.id,
        "queue": rec.queue,
        "task": rec.task,
        "status": rec.status.value,
        "args": args,
        "kwargs": kwargs,
        "payload": payload,
        "priority": rec.priority,
        "attempts": rec.attempts,
        "max_attempts": rec.max_attempts,
        "stalls": rec.stalls,
        "run_at": iso(rec.run_at),
        "lease_owner": rec.lease_owner,
        "leased_until": iso(rec.leased_until),
        "result": _parsed(rec.result),
        "error": _parsed(rec.error),
        "unique_key": rec.unique_key,
        "created_at": iso(rec.created_at),
        "updated_at": iso(rec.updated_at),
        "finished_at": iso(rec.finished_at),
    }


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table: rich's when installed, else aligned plain columns. Cells are literal
    text (never markup), on one line each."""
    cells = text_cells(rows)
    if have_rich():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(title) if title else None, title_justify="left")
        for i, name in enumerate(columns):
            # The last column (an error, a value) takes what is left; the others keep
            # their full width while the terminal allows, and fold (never truncate: an
            # id cut short would be copied wrong) when it is too narrow.
            width = None
            if i < len(columns) - 1:
                width = max([len(name), *(len(row[i]) for row in cells)])
            table.add_column(name, overflow="fold", width=width)
        for row in cells:
            table.add_row(*(Text(c) for c in row))
        Console(highlight=False).print(table)
        return
    for line in plain_table(title, columns, cells):
        click.echo(line)


def text_cells(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    """Table cells as one-line literal text (None: ``-``)."""
    return [[clean("-" if c is None else str(c), one_line=True) for c in row] for row in rows]


def plain_table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]
) -> list[str]:
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [title] if title else []
    for row in (list(columns), *rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def print_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """``name  value`` lines (a job's columns), values literal and on one line."""
    print_table(title, ["field", "value"], [(k, v) for k, v in fields])


def print_block(title: str, text: str) -> None:
    """A multi-line block (a traceback, arguments): literal text, control characters
    escaped, newlines kept."""
    click.echo(f"{title}:")
    for line in clean(text).splitlines() or [""]:
        click.echo(f"  {line}")


def stderr(message: str) -> None:
    click.echo(message, err=True)
    sys.stderr.flush()
