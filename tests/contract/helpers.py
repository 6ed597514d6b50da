"""Builders shared by the contract suites."""

from __future__ import annotations

from aqueue._ids import new_job_id, now_us
from aqueue._models import NewJob
from aqueue._store.values import Claim

LEASE = 30_000_000
"""A lease of 30 s, in µs."""


def new(
    *,
    queue: str = "q",
    job_id: str | None = None,
    run_at: int | None = None,
    unique_key: str | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    created_at: int | None = None,
) -> NewJob:
    now = now_us() - 1_000_000  # due at once for a test's later ``now``
    return NewJob(
        id=job_id or new_job_id(),
        queue=queue,
        task="t",
        payload='{"a":[1]}',
        priority=priority,
        max_attempts=max_attempts,
        run_at=now if run_at is None else run_at,
        created_at=now if created_at is None else created_at,
        unique_key=unique_key,
        explicit_id=job_id is not None,
    )


def claim(
    ids: list[str],
    token: str,
    *,
    now: int,
    owner: str = "r1",
    stalls: int = 0,
    attempts: int = 0,
    lease: int = LEASE,
) -> Claim:
    return Claim([(i, stalls, attempts) for i in ids], owner, token, now + lease, now)
