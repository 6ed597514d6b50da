"""A live dashboard for the browser and HTTP tests: ``python -m aqueue web`` and
``python -m aqueue run`` in subprocesses over real Redis and a SQLite file, the
credentials in their environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REDIS_URL = os.environ.get("AQUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN = "live-token-0123456789abcdef"
ADMIN = ("admin", "admin-pw-123")
VIEWER = ("viewer", "viewer-pw-123")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    url: str
    tmp: Path
    env: dict[str, str]

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {TOKEN}"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1.0)
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def live_server(tmp: Path) -> Iterator[Live]:
    prefix = f"aqlive_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AQUEUE_REDIS_URL": REDIS_URL,
        "AQUEUE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'jobs.sqlite3'}",
        "AQUEUE_TEST_PREFIX": prefix,
        "AQUEUE_WEB_TOKEN": TOKEN,
        "AQUEUE_WEB_USER": ADMIN[0],
        "AQUEUE_WEB_PASSWORD": ADMIN[1],
        "AQUEUE_WEB_READONLY_USER": VIEWER[0],
        "AQUEUE_WEB_READONLY_PASSWORD": VIEWER[1],
    }
    port = free_port()
    app = "tests.web.live_app:queue"
    py = sys.executable
    logs = [open(tmp / name, "wb") for name in ("web.log", "runner.log")]  # noqa: SIM115
    web = subprocess.Popen(
        [py, "-m", "aqueue", "web", app, "--port", str(port), "--log-level", "warning"],
        env=env, cwd=tmp, stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    runner = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", web, tmp / "web.log")
        runner = subprocess.Popen(
            [py, "-m", "aqueue", "run", app, "--lease", "6", "--log-level", "warning"],
            env=env, cwd=tmp, stdout=logs[1], stderr=subprocess.STDOUT,
        )  # fmt: skip
        yield Live(url, tmp, env)
    finally:
        if runner is not None:
            stop(runner)
        stop(web)
        for f in logs:
            f.close()
        _drop_redis_keys(prefix)


def _drop_redis_keys(prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(r.scan_iter(match=f"{{{prefix}:*"))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


def chromium() -> str | None:
    """The path of Debian's chromium, installed with apt-get when missing (as root);
    ``None`` when that is impossible here."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if os.path.exists(path):
        return path
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode != 0:
            return None
    return path if os.path.exists(path) else None
