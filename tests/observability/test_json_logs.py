"""``run --log-format json``: every line a runner writes is one JSON object, and the
lines about a job (the runner's and the handler's own) carry its id, task, attempt,
runner and queue. Through the real CLI (two processes under the supervisor)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

from aqueue import JobFailedError

from . import obs_tasks
from .conftest import ObsEnv


async def test_json_lines_carry_the_job_fields(obs: ObsEnv) -> None:
    p = obs.run_cli("--processes", "2", "--log-format", "json", "--lease", "5")
    q = obs_tasks.register(obs.queue())
    try:
        ok = await q.enqueue("ok", 3)
        boom = await q.enqueue("boom", "kaput")
        flaky = await q.enqueue("flaky")
        assert await ok.result(timeout=60, poll=0.05) == 3
        assert await flaky.result(timeout=60, poll=0.05) == "second time lucky"
        try:
            await boom.result(timeout=60, poll=0.05)
        except JobFailedError:
            pass
    finally:
        err = obs.stop(p)
        await q.close()
    lines = err.splitlines()
    assert lines
    records: list[dict[str, Any]] = []
    for line in lines:
        rec = json.loads(line)  # every line is JSON
        assert isinstance(rec, dict)
        assert {"time", "level", "logger", "message"} <= rec.keys(), rec
        records.append(rec)
    assert any("started runner process" in r["message"] for r in records)  # the supervisor's

    boom_lines = [r for r in records if r.get("job_id") == boom.id]
    # the handler's own line and the runner's line about the failure
    assert {r["logger"] for r in boom_lines} >= {"obs_app", "aqueue.runner"}, boom_lines
    for r in boom_lines:
        assert (r["task"], r["attempt"], r["queue"]) == ("boom", 1, q.name)
        assert r["runner"]
    (failure,) = [r for r in boom_lines if r["logger"] == "aqueue.runner"]
    assert failure["level"] == "WARNING"
    assert "ValueError: kaput" in failure["message"]
    handler = [r for r in boom_lines if r["logger"] == "obs_app"]
    assert handler[0]["level"] == "ERROR" and "kaput" in handler[0]["message"]

    ok_lines = [r for r in records if r.get("job_id") == ok.id]
    assert [r["message"] for r in ok_lines] == ["ok got 3"]
    retried = [r for r in records if r.get("job_id") == flaky.id]
    assert [(r["attempt"], r["level"]) for r in retried] == [(1, "INFO")]
    assert "retrying" in retried[0]["message"]


async def test_text_stays_the_default(obs: ObsEnv) -> None:
    p = obs.run_cli("--lease", "5", "--burst")
    code = p.wait(60)
    err = obs.stop(p)
    assert code == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert not line.startswith("{"), line


def test_formatter_fields_extra_and_exception() -> None:
    from aqueue._logjson import JsonFormatter

    logger = logging.getLogger("aqueue.test_json")
    try:
        raise KeyError("x")
    except KeyError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            'reclaimed job %s "quoted" <b>',
            ("j1",),
            sys.exc_info(),
            extra={"job_id": "j1", "task": "t"},
        )
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == 'reclaimed job j1 "quoted" <b>'
    assert (out["job_id"], out["task"], out["level"]) == ("j1", "t", "ERROR")
    assert out["time"].endswith("Z") and "T" in out["time"]
    assert "KeyError: 'x'" in out["exception"]


def test_import_aqueue_stays_small() -> None:
    """The core install imports none of the observability dependencies."""
    code = (
        "import sys, aqueue\n"
        "bad = [m for m in ('prometheus_client', 'aqueue.metrics', 'aqueue.otel', "
        "'aqueue._logjson', 'starlette', 'uvicorn', 'jinja2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
