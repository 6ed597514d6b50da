"""The examples the docs quote are run, so their snippets are tested."""

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
    "db_url",
    [
        pytest.param(MYSQL_URL, id="mysql", marks=pytest.mark.mysql),
        pytest.param(POSTGRES_URL, id="postgres"),
    ],
)
def test_job_control_tour_runs(tmp_path: Path, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env.update(AQUEUE_REDIS_URL=REDIS_URL, AQUEUE_DATABASE_URL=db_url)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "job_control.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tour ok" in proc.stdout
