"""The tutorial (docs/tutorial/index.md), walked as a reader would: a runner started with
``python -m aqueue run tutorial_app:queue`` in examples/, the FastAPI app of
examples/tutorial_app.py in this process, on the embedded default (no URLs set), so the
code the tutorial includes is the code that runs."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["AQUEUE_HOME"] = str(home)
    return env


@pytest.fixture
def tutorial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    home = tmp_path / "aq"
    for key in [k for k in os.environ if k.startswith("AQUEUE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AQUEUE_HOME", str(home))
    spec = importlib.util.spec_from_file_location("tutorial_app", EXAMPLES / "tutorial_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runner = subprocess.Popen(
        [sys.executable, "-m", "aqueue", "run", "tutorial_app:queue", "--concurrency", "4"],
        cwd=EXAMPLES,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield module
    finally:
        runner.send_signal(signal.SIGTERM)
        out, _ = runner.communicate(timeout=30)
        subprocess.run(
            [sys.executable, "-m", "aqueue", "embedded", "stop"],
            env=_env(home),
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert runner.returncode == 0, out[-3000:]


@pytest.mark.acceptance
@pytest.mark.timeout(90)
async def test_tutorial_walkthrough(tutorial: ModuleType) -> None:
    import httpx

    app = tutorial.app
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://tutorial") as client,
    ):
        created = await client.post("/images/7/thumbnail", params={"width": 64})
        assert created.status_code == 202
        job_id = created.json()["job_id"]

        done = (await client.get(f"/jobs/{job_id}", params={"wait": 30})).json()
        assert done == {
            "status": "done",
            "result": {"image": 7, "url": "/thumbs/7-64.png", "attempt": 2},
        }
        after = (await client.get(f"/jobs/{job_id}")).json()
        assert after == {"status": "done", "attempts": 2}
        assert (await client.get("/jobs/no-such-job")).status_code == 404
