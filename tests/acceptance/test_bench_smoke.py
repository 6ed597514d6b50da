"""The benchmark harness keeps working: a quick aqueue-only run (N=200)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.acceptance
@pytest.mark.timeout(300)
def test_benchmark_harness_quick_run() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "aqueue"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "aqueue" in proc.stdout
    assert "W5 noop" in proc.stdout and "FAILED" not in proc.stdout, proc.stdout[-3000:]
