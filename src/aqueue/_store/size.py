"""The named query behind a queue's ``max_size``."""

from __future__ import annotations

from .store import Store


async def waiting_jobs(store: Store, queue: str, cap: int) -> int:
    """The jobs of ``queue`` that can still run: ``todo``, due or delayed (never
    cancelled, finished or running ones), counted up to ``cap``. The count reads the
    ``(queue, status, run_at)`` index, and the cap bounds it when a queue holds far
    more than its ``max_size`` (jobs enqueued by producers without one)."""
    p = store._ph
    sql = (
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {store._t} WHERE queue = {p} AND "
        f"status = 'todo' LIMIT {int(cap)}) AS waiting"
    )
    rows = await store._run("counting waiting jobs", lambda: store._fetch(sql, (queue,)))
    return int(rows[0][0])
