"""Where a periodic or cron schedule's state lives: the time it was first seen, one row
per schedule in the ``<table>_meta`` table (the jobs table's companion)."""

from __future__ import annotations

from .store import Store


async def first_seen(store: Store, key: str, now: int) -> int:
    """When the schedule ``key`` was first seen (UNIX µs): ``now`` if never before, and
    then recorded. Every runner reads the same time: the first insert wins."""
    p = store._ph
    meta = store.engine.dialect.identifier_preparer.quote(store.meta.name)
    insert = "INSERT OR IGNORE" if store.is_sqlite else "INSERT IGNORE"
    await store._run(
        "recording a schedule",
        lambda: store._exec(
            f"{insert} INTO {meta} (name, value) VALUES ({p}, {p})", (key, str(now))
        ),
    )
    rows = await store._run(
        "reading a schedule",
        lambda: store._fetch(f"SELECT value FROM {meta} WHERE name = {p}", (key,)),
    )
    return int(rows[0][0]) if rows else now
