"""The soak's own servers: :class:`MariaServer` (a throwaway ``mariadbd`` on a free port
that the soak SIGKILLs and restarts on the same port and datadir), :class:`PostgresServer`
(the same for PostgreSQL 15) and :class:`SqlProxy` (a TCP proxy in front of either, in a
thread of its own, that cuts SQL for a moment).

Redis is ``tests/chaos/harness.py``'s :class:`RedisServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
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


PG_BIN = Path(os.environ.get("AQUEUE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def postgres_available() -> bool:
    """The PostgreSQL server binaries are there, and (as root) a ``postgres`` user to run
    them as: the server refuses to run as root."""
    if not all((PG_BIN / name).is_file() for name in ("initdb", "postgres", "psql")):
        return False
    if os.geteuid() != 0:
        return True
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


class PostgresServer:
    """A PostgreSQL 15 server with a temp data directory, on 127.0.0.1 and a free port,
    user ``postgres`` with trust authentication and a database ``test``.

    As root the server runs as the ``postgres`` user (it refuses root), so its files live
    in a directory of its own from :func:`tempfile.mkdtemp` that ``postgres`` owns:
    ``directory`` (often pytest's ``tmp_path``, which only root may traverse) gets just a
    symlink ``pg`` to it. :meth:`kill` SIGKILLs the postmaster and its backends at once (a
    crash: the next :meth:`start` runs WAL recovery on the same datadir and port).
    ``fsync=off``: the faults are process kills, never a power loss, and a commit's WAL
    is written to the kernel before the client hears of it, so a kill loses no commit.
    """

    def __init__(self, directory: Path | None = None, port: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aqueue-pg-"))
        self.datadir = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                (Path(directory) / "pg").symlink_to(self.dir)

    @property
    def url(self) -> str:
        return self.url_at(self.port)

    def url_at(self, port: int, database: str = "test") -> str:
        """The URL through another port (a proxy in front of this server)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{database}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _run(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            cmd,
            capture_output=True,
            check=False,
            timeout=timeout,
            **self._user(),
        )

    def _user(self) -> dict[str, Any]:
        if not self._as_postgres:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def install(self) -> None:
        cmd = [str(PG_BIN / "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        done = self._run([*cmd, "--no-sync", "-D", str(self.datadir)], timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout!r}\n{done.stderr!r}")

    def start(self, timeout: float = 60.0) -> float:
        """Start (crash recovery after a kill); returns seconds until it accepts sessions."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        t0 = time.monotonic()
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.dir),
            "max_connections": "500",
            "shared_buffers": "32MB",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "on",
            "dynamic_shared_memory_type": "mmap",
            "logging_collector": "off",
        }
        cmd = [str(PG_BIN / "postgres"), "-D", str(self.datadir), "-p", str(self.port)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.dir,
                **self._user(),
            )
        deadline = t0 + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"postgres on {self.port} did not start:\n{err}")
            time.sleep(0.02)  # polling the server's port with a deadline
        return time.monotonic() - t0

    def answers(self) -> bool:
        """A startup packet gets an authentication reply ('R'), not an error such as
        57P03 "the database system is starting up": sessions are accepted."""
        body = struct.pack("!i", 196608) + b"user\0postgres\0database\0postgres\0\0"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.settimeout(0.5)
                s.sendall(struct.pack("!i", len(body) + 4) + body)
                reply = s.recv(1)
                if reply == b"R":
                    s.sendall(b"X\0\0\0\4")  # Terminate: no "unexpected EOF" in the log
        except OSError:
            return False
        return reply == b"R"

    def create_database(self, name: str = "test") -> None:
        psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        exists = self._run([*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{name}'"], 30)
        if exists.stdout.strip() == b"1":
            return
        done = self._run([*psql, "-c", f'CREATE DATABASE "{name}"'], 30)
        if done.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {name} failed: {done.stderr!r}")

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend (its process group): backends left
        running would hold the shared memory and the restart would refuse to start."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._wait_group_gone()

    def _wait_group_gone(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the backends' exit with a deadline

    def stop(self) -> None:
        """SIGINT (fast shutdown: sessions ended, a clean checkpoint), SIGKILL if it
        lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_group_gone()

    def remove(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    """Some process of the group is still running (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


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
        socket instance``, see docs/explanation/reliability.md.)"""
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
