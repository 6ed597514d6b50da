"""``python -m aqueue web --log-format json``: every line the server writes is one JSON
object, its own start line, uvicorn's error log and its access log (with the request's
method, path and status as fields). Through the real command, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from .live import ROOT, TOKEN, free_port, stop


def _lines(log: Path) -> list[dict[str, Any]]:
    text = log.read_text(errors="replace")
    complete = text[: text.rfind("\n") + 1]  # a line being written is read next time
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _wait_line(log: Path, proc: subprocess.Popen[bytes], want: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        found = [line for line in _lines(log) if want(line)]
        if found:
            return found[0]
        assert proc.poll() is None, f"the server exited: {log.read_text()[-2000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no such line within 20 s:\n{log.read_text()[-2000:]}")


def test_web_log_format_json(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AQUEUE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "AQUEUE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}",
        "AQUEUE_TEST_PREFIX": "aqlive_jsonlog",
        "AQUEUE_WEB_TOKEN": TOKEN,
    }
    log = tmp_path / "web.log"
    cmd = [sys.executable, "-m", "aqueue", "web", "tests.web.live_app:queue", "--port",
           str(port), "--log-format", "json"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            start = _wait_line(log, proc, lambda j: j["message"].startswith("aqueue web: queue"))
            assert start["queue"] == "live" and start["logger"] == "aqueue.web"
            running = _wait_line(log, proc, lambda j: "running on" in j["message"])
            assert running["logger"] == "uvicorn.error" and running["level"] == "INFO"
            url = f"http://127.0.0.1:{port}"
            ok = httpx.get(
                url + "/jobs?status=failed", headers={"authorization": f"Bearer {TOKEN}"}
            )
            assert ok.status_code == 200
            refused = httpx.get(url + "/runners")
            assert refused.status_code == 401
            access = _wait_line(log, proc, lambda j: j.get("path") == "/jobs?status=failed")
            assert access["logger"] == "uvicorn.access"
            assert (access["method"], access["status"]) == ("GET", 200)
            assert access["client"].startswith("127.0.0.1:")
            assert access["time"].endswith("Z")
            denied = _wait_line(log, proc, lambda j: j.get("path") == "/runners")
            assert denied["status"] == 401
        finally:
            stop(proc)
    every = _lines(log)  # every line parsed as JSON, the shutdown lines included
    assert any(j["message"].startswith("Finished server process") for j in every)
    assert all({"time", "level", "logger", "message"} <= j.keys() for j in every)
