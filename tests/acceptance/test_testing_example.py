"""examples/testing is an app tested the way a user tests one with ``aqueue.testing``:
its own pytest file and settings, the plugin's fixtures (found through the ``pytest11``
entry point, nothing configured), no servers. It is run here in a subprocess with the
URLs pointing at a port where nothing listens: had anything connected, it would fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "testing"
NOWHERE_REDIS = "redis://127.0.0.1:9/0"
NOWHERE_DB = "mysql+asyncmy://nobody@127.0.0.1:9/nothing"


@pytest.mark.acceptance
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_example_app_tests_pass_without_servers(mode: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env.update(
        AQUEUE_REDIS_URL=NOWHERE_REDIS,
        AQUEUE_DATABASE_URL=NOWHERE_DB,
        PYTHONDONTWRITEBYTECODE="1",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            f"asyncio_mode={mode}",
            str(EXAMPLE),
        ],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "6 passed" in out, out[-3000:]
    assert "aqueue" in _plugins(env), "the plugin is not registered as an entry point"


def _plugins(env: dict[str, str]) -> str:
    """The names of the pytest11 entry points installed in this environment."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlib.metadata import entry_points; "
            "print(' '.join(e.name for e in entry_points(group='pytest11')))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.stdout
