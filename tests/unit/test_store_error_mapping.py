"""Driver errors are mapped to ``StoreError`` at the store's boundary, including the bare
RuntimeError asyncmy raises when a connection is reset during its handshake (a proxy in
front of a server that is down): a runner's side task must not die of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aqueue import StoreError
from aqueue._store.store import Store

HANDSHAKE_RESET = "Transport does not expose socket instance"


async def test_a_connection_reset_during_the_handshake_is_a_store_error(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}", table="t")
    calls = 0

    async def connect() -> int:
        nonlocal calls
        calls += 1
        raise RuntimeError(HANDSHAKE_RESET)

    try:
        with pytest.raises(StoreError, match="Transport does not expose socket"):
            await store.db.run("reading", connect, attempts=3)
        assert calls == 3  # nothing was sent: tried again, like a refused connection
    finally:
        await store.close()


async def test_other_runtime_errors_are_not_taken_for_database_errors(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}", table="t")

    async def bug() -> int:
        raise RuntimeError("a bug in aqueue")

    try:
        with pytest.raises(RuntimeError, match="a bug"):
            await store.db.run("reading", bug)
    finally:
        await store.close()
