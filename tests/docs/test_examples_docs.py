"""Examples the docs and the README quote, run as programs (each asserts what the block
it provides shows): the dashboard mounted with an app's own auth and tracing
(docs/operations.md), the quickstart app with a CLI runner and its Starlette app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import MYSQL_URL, POSTGRES_URL, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.acceptance
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("example", "says"),
    [
        ("mounted_dashboard.py", "mounted dashboard ok"),
        ("tracing.py", "tracing ok"),
    ],
)
@pytest.mark.parametrize(
    "db_url",
    [
        pytest.param(MYSQL_URL, id="mysql", marks=pytest.mark.mysql),
        pytest.param(POSTGRES_URL, id="postgres"),
    ],
)
def test_example_runs(tmp_path: Path, db_url: str, example: str, says: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env.update(AQUEUE_REDIS_URL=REDIS_URL, AQUEUE_DATABASE_URL=db_url)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert says in proc.stdout


STARLETTE_CLIENT = """
import time
from starlette.testclient import TestClient
from examples.starlette_app import app

with TestClient(app) as c:
    r = c.post("/signup", json={"user_id": 42})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 30
    while True:  # the runner started by the test runs it
        body = c.get(f"/jobs/{job_id}").json()
        if body["status"] == "done" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert body["status"] == "done" and body["result"].endswith("@example.com>"), body
    assert c.post("/signup", json={"user_id": "x"}).status_code == 422
    assert c.post("/signup", content=b"{").status_code == 400
print("starlette app ok")
"""


@pytest.mark.acceptance
@pytest.mark.timeout(150)
def test_quickstart_and_starlette_examples_with_a_cli_runner(tmp_path: Path) -> None:
    """examples/quickstart_app.py (its runner through the real CLI, its producer as the
    module) and examples/starlette_app.py (the README quotes both), on the embedded
    default under a scratch AQUEUE_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env.update(AQUEUE_HOME=str(tmp_path / "aq"), PYTHONPATH=str(ROOT))
    log = (tmp_path / "runner.log").open("w")
    runner = subprocess.Popen(
        [sys.executable, "-m", "aqueue", "run", "examples.quickstart_app:queue"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        producer = subprocess.run(
            [sys.executable, "-m", "examples.quickstart_app"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert producer.returncode == 0, producer.stderr[-3000:]
        assert "send_welcome(42) -> <1@example.com>" in producer.stdout
        assert "add(2, 4) -> 6" in producer.stdout
        web = subprocess.run(
            [sys.executable, "-c", STARLETTE_CLIENT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert web.returncode == 0, web.stderr[-3000:]
        assert "starlette app ok" in web.stdout
    finally:
        runner.terminate()
        runner.wait(timeout=30)
        log.close()
        subprocess.run(
            [sys.executable, "-m", "aqueue", "embedded", "stop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=30,
        )
    assert "mailer ready" in (tmp_path / "runner.log").read_text()
