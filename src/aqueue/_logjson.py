"""``--log-format json``: one JSON object per log line. Lines logged while a job runs
(the runner's lines about it and the handler's own) carry the job's fields, read from
the running job's context (``current_job``); lines about a job logged elsewhere (a
reclaim, a refused finish) pass the ones they know with ``extra=``."""

from __future__ import annotations

import json
import logging
import logging.config
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
        if record.name == "uvicorn.access":
            out.update(_access(record.args))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=repr)


def _access(args: Any) -> dict[str, Any]:
    """The fields of the web server's access line (``python -m aqueue web``), whose
    arguments are ``(client, method, path, http_version, status)``."""
    if not isinstance(args, tuple) or len(args) != 5:
        return {}
    client, method, path, version, status = args
    return {"client": client, "method": method, "path": path, "http": version, "status": status}


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


def json_logging(level: str) -> None:
    """The root logger writes JSON lines to stderr at ``level``, and the web server's
    loggers (error and access) write through it (``python -m aqueue web``)."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"json": {"()": JsonFormatter}},
            "handlers": {
                "json": {
                    "class": "logging.StreamHandler",
                    "formatter": "json",
                    "stream": "ext://sys.stderr",
                }
            },
            "loggers": {
                name: {"handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            "root": {"handlers": ["json"], "level": level.upper()},
        }
    )
