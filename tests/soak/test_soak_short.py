"""The short randomized soak (~60 s of faults and load on MariaDB, ~40 s on PostgreSQL)
inside ``make test``; the full one is ``nox -s soak`` (docs/explanation/reliability.md, "Randomized
soak")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.soak.servers import mariadb_available, postgres_available

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.chaos]

#: (database, seconds of faults): PostgreSQL's run is the shorter one, to keep ``make
#: test``'s time; at 40 s the faults come every 2-6 s and most runs see every kind.
RUNS = [
    pytest.param(
        "mariadb",
        60,
        marks=pytest.mark.skipif(
            not mariadb_available(), reason="needs mariadbd and mariadb-install-db"
        ),
        id="mariadb",
    ),
    pytest.param(
        "postgres",
        40,
        marks=pytest.mark.skipif(
            not postgres_available(), reason="needs PostgreSQL 15 server binaries"
        ),
        id="postgres",
    ),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("database", "duration"), RUNS)
def test_short_soak_loses_nothing_and_duplicates_only_inside_the_window(
    tmp_path: Path, database: str, duration: int
) -> None:
    seed = int(os.environ.get("AQUEUE_SOAK_SEED", "16"))
    cmd = [sys.executable, "-m", "tests.soak.soak", "--seed", str(seed)]
    cmd += ["--duration", str(duration), "--database", database]
    proc = subprocess.run(
        [*cmd, "--dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
    )
    print(proc.stdout[-20000:])
    assert proc.returncode == 0, f"soak failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "classes: lost 0, stuck 0, concurrent 0, outside_window 0" in proc.stdout
