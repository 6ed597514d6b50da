"""The dispatch marker's choice of what to mark (``_store.marker``): pure, with the
monotonic time passed in, and the marker itself against a recording store."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

from aqueue._models import IdRun
from aqueue._store.base import JobStore
from aqueue._store.marker import MIN_AGE, DispatchMarker, split_due


def _batch(t: float, *ids: str) -> tuple[float, list[tuple[str, int, str]], list[Any]]:
    return (t, [(i, 7, "e1") for i in ids], [])


def test_split_due_takes_only_batches_of_age_and_keeps_the_young_in_order() -> None:
    batches = deque([_batch(1.0, "a"), _batch(1.4, "b", "c"), _batch(1.6, "d")])
    marks, runs = split_due(batches, now=2.0, min_age=0.5)
    assert [m[0] for m in marks] == ["a", "b", "c"]
    assert runs == []
    assert [b[0] for b in batches] == [1.6]
    marks, _ = split_due(batches, now=2.0, min_age=0.5)
    assert marks == [] and len(batches) == 1
    marks, _ = split_due(batches, now=2.0, min_age=0.0)
    assert [m[0] for m in marks] == ["d"] and not batches


class _Recorder:
    """Stands in for the store: records each mark's job ids."""

    def __init__(self) -> None:
        self.marked: list[list[str]] = []
        self.event = asyncio.Event()

    async def mark_dispatched(
        self,
        marks: Sequence[tuple[str, int]],
        epoch: str,
        now: int,
        runs: Sequence[tuple[IdRun, int]],
        unmarked_only: bool,
    ) -> None:
        self.marked.append([i for i, _ in marks])
        self.event.set()


async def test_a_mark_leaves_out_jobs_pushed_since_less_than_the_minimum_age() -> None:
    clock = [100.0]
    rec = _Recorder()
    marker = DispatchMarker(
        cast(JobStore, rec), linger=0.01, min_age=MIN_AGE, monotonic=lambda: clock[0]
    )
    marker.add(["old"], 5, "e1")
    clock[0] += MIN_AGE  # "old" is of age, "young" is not
    marker.add(["young"], 6, "e1")
    await asyncio.wait_for(rec.event.wait(), 5)
    assert rec.marked == [["old"]]
    rec.event.clear()
    clock[0] += MIN_AGE
    await asyncio.wait_for(rec.event.wait(), 5)  # the young one, at the next linger
    assert rec.marked == [["old"], ["young"]]
    await marker.close()


async def test_closing_marks_everything_pending_whatever_its_age() -> None:
    rec = _Recorder()
    marker = DispatchMarker(cast(JobStore, rec), linger=60, monotonic=lambda: 0.0)
    marker.add(["a", "b"], 5, "e1")
    await marker.close()
    assert sorted(i for m in rec.marked for i in m) == ["a", "b"]
