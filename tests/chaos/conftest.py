"""Fixtures of the fault-injection suite (see ``harness.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import chaos, database, kill_spawned, own_redis

__all__ = ["chaos", "database", "own_redis"]


@pytest.fixture(autouse=True)
def _kill_leftover_runners() -> Iterator[None]:
    """Whatever happens, no runner process group outlives its test."""
    try:
        yield
    finally:
        kill_spawned()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.mysql)
