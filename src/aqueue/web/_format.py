"""How stored values read on a page or in the API: times (UNIX µs, shown in UTC),
durations, the arguments, result and error (JSON text in SQL) decoded, and a job as
the API returns it, never with its lease token."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .._errors import SerializationError
from .._models import JobRecord
from .._serde import decode_payload


def when(us: int | None) -> str:
    """A UNIX µs time as ``YYYY-MM-DD HH:MM:SS`` UTC (milliseconds kept)."""
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def ago(seconds: float | None) -> str:
    """A duration as people read it: ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``."""
    if seconds is None:
        return "—"
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.1f} s" if s % 1 else f"{s:.0f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def approx(n: int) -> str:
    """An estimated count, marked so and rounded: ``≈1.0M``, ``≈250k``."""
    if n >= 1_000_000:
        return f"≈{n / 1_000_000:.1f}M"
    if n >= 1_000:
        return f"≈{n / 1_000:.0f}k"
    return f"≈{n}"


def parse_json(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return text


def pretty(value: Any) -> str:
    """Indented JSON (non-ASCII kept): the page escapes it, never this."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def arguments(rec: JobRecord) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """(args, kwargs, run options) of a job's stored payload (inflated if it was
    stored compressed)."""
    try:
        data = decode_payload(rec.payload) if rec.payload is not None else {}
    except (ValueError, SerializationError):
        data = rec.payload
    if not isinstance(data, dict):
        return [data], {}, {}
    args = data.get("a") or []
    kwargs = data.get("k") or {}
    opts = data.get("o") or {}
    return (
        list(args) if isinstance(args, list) else [args],
        kwargs if isinstance(kwargs, dict) else {"k": kwargs},
        opts if isinstance(opts, dict) else {},
    )


def short_args(rec: JobRecord, width: int = 80) -> str:
    """The arguments on one line, cut to ``width`` characters."""
    args, kwargs, _ = arguments(rec)
    parts = [json.dumps(a, ensure_ascii=False, default=str) for a in args]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in kwargs.items()]
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def error_of(rec: JobRecord) -> dict[str, str] | None:
    """The error's type, message and traceback (``None``: no error)."""
    if not rec.error:
        return None
    data = parse_json(rec.error)
    if not isinstance(data, dict):
        return {"type": "Error", "message": str(data), "traceback": ""}
    return {
        "type": str(data.get("type", "Error")),
        "message": str(data.get("message", "")),
        "traceback": str(data.get("traceback", "")),
    }


def error_line(rec: JobRecord, width: int = 100) -> str:
    """``Type: message`` of a job's error on one line, cut to ``width``."""
    err = error_of(rec)
    if err is None:
        return ""
    text = " ".join(f"{err['type']}: {err['message']}".split())
    return text if len(text) <= width else text[: width - 1] + "…"


def origin(rec: JobRecord) -> str | None:
    """Where a job came from when not from a producer: a schedule's tick."""
    return "schedule (cron/periodic tick)" if rec.id.startswith("cron-") else None


def job_json(rec: JobRecord) -> dict[str, Any]:
    """A job as the HTTP API returns it: every field but the lease token, the
    arguments, result and error decoded, times in UNIX µs and as ISO text."""
    args, kwargs, opts = arguments(rec)
    out: dict[str, Any] = {
        "id": rec.id,
        "queue": rec.queue,
        "task": rec.task,
        "status": rec.status.value,
        "args": args,
        "kwargs": kwargs,
        "options": opts,
        "priority": rec.priority,
        "attempts": rec.attempts,
        "max_attempts": rec.max_attempts,
        "stalls": rec.stalls,
        "lease_owner": rec.lease_owner,
        "result": parse_json(rec.result),
        "error": error_of(rec),
        "unique_key": rec.unique_key,
        "progress": rec.progress,
        "progress_message": rec.progress_message,
        "tags": rec.tags.split(",") if rec.tags else [],
    }
    for name in ("run_at", "leased_until", "created_at", "updated_at", "finished_at"):
        us = getattr(rec, name)
        out[name] = us
        out[f"{name}_iso"] = (
            None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()
        )
    return out
