"""Fixtures of the observability tests: an isolated queue (own name, table, key prefix;
SQLite in a temp dir, shared Redis) described by environment variables, so that the app
module ``obs_app`` builds the same queue in this process and in a CLI runner; a starter
for CLI runners; ``wait_for`` (poll with a deadline)."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from aqueue import Queue
from aqueue._store.store import Store

REDIS_URL = os.environ.get("AQUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HERE = Path(__file__).parent


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def free_ports(n: int) -> int:
    """A port p such that p … p+n-1 were free a moment ago."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            socks = []
            for i in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
        return base
    raise AssertionError("no free port range")


@dataclass
class ObsEnv:
    """One test's queue settings (as ``obs_app`` reads them) and its CLI processes."""

    tmp: Path
    env: dict[str, str]
    procs: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def queue(self) -> Queue:
        return Queue(
            self.env["AQT_QUEUE"],
            redis_url=REDIS_URL,
            database_url=self.env["AQT_DATABASE_URL"],
            table=self.env["AQT_TABLE"],
            key_prefix=self.env["AQT_PREFIX"],
        )

    def run_cli(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``python -m aqueue run obs_app:queue <args>``, stderr to a file."""
        err = self.tmp / f"runner{len(self.procs)}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
        env.update(self.env, PYTHONPATH=str(HERE), **(extra_env or {}))
        with err.open("wb") as f:
            p = subprocess.Popen(
                [sys.executable, "-m", "aqueue", "run", "obs_app:queue", *args],
                cwd=self.tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=f,
                start_new_session=True,
            )
        self.procs.append((p, err))
        return p

    def stop(self, p: subprocess.Popen[bytes], timeout: float = 30) -> str:
        """SIGTERM ``p``, wait for its exit (code 0), return its stderr."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        code = p.wait(timeout)
        err = next(e for q, e in self.procs if q is p).read_text(errors="replace")
        assert code == 0, f"runner exited with {code}:\n{err[-3000:]}"
        return err


@pytest.fixture
async def obs(tmp_path: Path) -> AsyncIterator[ObsEnv]:
    tag = uuid.uuid4().hex[:10]
    db = f"sqlite+aiosqlite:///{tmp_path / 'jobs.sqlite3'}"
    e = ObsEnv(
        tmp_path,
        {
            "AQT_QUEUE": f"obs{tag}",
            "AQT_REDIS_URL": REDIS_URL,
            "AQT_DATABASE_URL": db,
            "AQT_TABLE": f"t_{tag}",
            "AQT_PREFIX": f"p_{tag}",
        },
    )
    old = {k: os.environ.get(k) for k in e.env}
    os.environ.update(e.env)
    try:
        yield e
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for p, _ in e.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        store = Store(db, table=e.env["AQT_TABLE"])
        try:
            await store.drop_schema()
        finally:
            await store.close()
        r = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k async for k in r.scan_iter(match=f"{{{e.env['AQT_PREFIX']}:*")]
            if keys:
                await r.delete(*keys)
        finally:
            await r.aclose()
