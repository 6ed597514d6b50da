"""The soak's own servers: :class:`MariaServer` (a throwaway ``mariadbd`` on a free port
that the soak SIGKILLs and restarts on the same port and datadir) and :class:`SqlProxy`
(a TCP proxy in front of it, in a thread of its own, that cuts SQL for a moment).

Redis is ``tests/chaos/harness.py``'s :class:`RedisServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.chaos.harness import Pair, free_port, relay

T = TypeVar("T")


def _binary(*names: str) -> str:
    for name in names:
        for d in ("", "/usr/sbin", "/usr/local/sbin", "/usr/libexec"):
            path = shutil.which(name) if not d else shutil.which(name, path=d)
            if path:
                return path
    raise RuntimeError(f"none of {names} found (MariaDB server binaries)")


def mariadb_available() -> bool:
    try:
        _binary("mariadbd", "mysqld")
        _binary("mariadb-install-db", "mysql_install_db")
    except RuntimeError:
        return False
    return True


class MariaServer:
    """``mariadbd`` with a temp datadir, on 127.0.0.1 and a free port, root without a
    password, ``innodb_flush_log_at_trx_commit=1`` (a SIGKILL loses no commit)."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.datadir = self.dir / "data"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, port: int | None = None, database: str = "soak") -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{port or self.port}/{database}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def install(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            _binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--user=root" if os.geteuid() == 0 else f"--user={os.getlogin()}",
        ]
        with (self.dir / "install.log").open("wb") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120)

    def start(self, timeout: float = 60.0) -> float:
        """Start (recovering the datadir after a kill); returns seconds until it answers."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        t0 = time.monotonic()
        cmd = [
            _binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.dir / 'mysqld.sock'}",
            f"--pid-file={self.dir / 'mysqld.pid'}",
            f"--log-error={self.dir / 'error.log'}",
            "--skip-networking=0",
            "--bind-address=127.0.0.1",
            f"--port={self.port}",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M",
            "--innodb-flush-log-at-trx-commit=1",
            "--skip-log-bin",
            "--max-connections=500",
            "--skip-name-resolve",
            "--performance-schema=0",
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = t0 + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (self.dir / "error.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mariadbd on {self.port} did not start:\n{err}")
            time.sleep(0.02)  # polling the server's port with a deadline
        return time.monotonic() - t0

    def answers(self) -> bool:
        """The server sent its handshake (protocol 10): it accepts connections."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.settimeout(0.5)
                greeting = s.recv(64)
        except OSError:
            return False
        return len(greeting) > 4 and greeting[4] == 10

    def create_database(self, name: str = "soak") -> None:
        client = _binary("mariadb", "mysql")
        subprocess.run(
            [
                client,
                "--no-defaults",
                "-h127.0.0.1",
                f"-P{self.port}",
                "-uroot",
                "-e",
                f"CREATE DATABASE IF NOT EXISTS {name}",
            ],
            check=True,
            timeout=30,
            capture_output=True,
        )

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """End of the soak: SIGTERM (clean shutdown), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


class SqlProxy:
    """A TCP proxy to ``target`` with its own event loop in a thread (the driver's own
    work never delays the traffic). :meth:`cut` aborts every connection and refuses new
    ones until :meth:`restore`."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.down = False
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._conns: set[Pair] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def start(self) -> None:
        self._call(self._listen())

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True, backlog=512
        )

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        await relay(cr, cw, self.target, lambda: self.down, self._conns)

    def cut(self) -> int:
        """Refuse new connections, abort the open ones; returns how many were cut."""
        return self._call(self._cut())

    async def _cut(self) -> int:
        self.down = True
        self.cuts += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        n = len(self._conns)
        for pair in list(self._conns):
            for w in pair:
                w.transport.abort()
        return n

    def restore(self) -> None:
        self._call(self._restore())

    def refuse(self) -> None:
        """Stop listening (new connections are refused) but leave the open ones alone:
        while MariaDB is down the proxy is invisible, as if clients connected directly.
        (Accepting and then resetting them instead is what a load balancer in front of a
        dead server does: asyncmy then raises ``RuntimeError: Transport does not expose
        socket instance``, see docs/reliability.md.)"""
        self._call(self._refuse())

    async def _refuse(self) -> None:
        self.down = True
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _restore(self) -> None:
        self.down = False
        await self._listen()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
