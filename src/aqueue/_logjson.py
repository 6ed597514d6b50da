"""``--log-format json``: one JSON object per log line. Lines logged while a job runs
(the runner's lines about it and the handler's own) carry the job's fields, read from
the running job's context (``current_job``); lines about a job logged elsewhere (a
reclaim, a refused finish) pass the ones they know with ``extra=``."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ._context import _current

JOB_FIELDS = ("job_id", "task", "attempt", "runner", "queue")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "process"}``, the job's fields on a job's
    lines, and ``exception`` (the traceback text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        ctx = _current.get(None)
        if ctx is not None:
            out["job_id"] = ctx.job_id
            out["task"] = ctx.task
            out["attempt"] = ctx.attempt
            out["runner"] = ctx.runner_id
            out["queue"] = getattr(ctx.queue, "name", None)
        fields = record.__dict__
        for key in JOB_FIELDS:
            if key in fields:
                out[key] = fields[key]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=repr)


def _iso(created: float) -> str:
    """UTC, millisecond precision: ``2026-12-04T21:03:53.123Z``."""
    seconds = int(created)
    ms = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def use_json_logs() -> None:
    """Every handler of the root logger writes JSON lines."""
    formatter = JsonFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
