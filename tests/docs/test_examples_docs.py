"""The examples that docs/operations.md quotes, run as programs (each asserts what the
block it provides shows): the dashboard mounted with an app's own auth, and tracing."""

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
