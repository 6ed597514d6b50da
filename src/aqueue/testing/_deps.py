"""Dependencies in the memory store: the same plans as the SQL store's
(``_store.deps``), applied to the rows in memory."""

from __future__ import annotations

from collections.abc import Sequence

from .._models import JobRecord, JobStatus, NewJob
from .._store.deps import plan_new, plan_release
from .._store.values import Edge
from ._rows import Row, Table


class Deps:
    """The deps table: ``(child, parent, on_failure)`` rows by parent."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._children: dict[str, list[tuple[str, str, int]]] = {}
        table.on_delete.append(self.forget)

    def insert(
        self, jobs: Sequence[NewJob], edges: Sequence[Edge], now: int
    ) -> dict[str, JobStatus]:
        rows = self._table.rows
        new = {j.id for j in jobs}
        known = {
            e.parent: rows[e.parent].status
            for e in edges
            if e.parent not in new and e.parent in rows
        }
        for j in jobs:
            if j.id in rows:
                raise ValueError(f"job {j.id} exists")
        states, live = plan_new(jobs, edges, known)
        for j in jobs:
            s = states[j.id]
            r = Row.new(j, now)
            r.status, r.parents_left, r.error = s.status, s.parents_left, s.error
            if s.status is JobStatus.CANCELLED:
                r.finished_at = now
                r.unique_key = None
            rows[j.id] = r
        for e in live:
            self._children.setdefault(e.parent, []).append(
                (e.child, e.parent, int(e.run_on_failure))
            )
        return {i: s.status for i, s in states.items()}

    def forget(self, children: Sequence[str]) -> None:
        """The edges of deleted jobs, as the SQL store deletes them with the jobs."""
        gone = set(children)
        for parent in list(self._children):
            kept = [e for e in self._children[parent] if e[0] not in gone]
            if kept:
                self._children[parent] = kept
            else:
                del self._children[parent]

    def count(self) -> int:
        """How many edges are stored."""
        return sum(len(edges) for edges in self._children.values())

    def release(self, finished: dict[str, JobStatus], now: int) -> list[JobRecord]:
        """The release of the children of jobs that just reached a final status."""
        rows = self._table.rows
        released: list[JobRecord] = []
        frontier = dict(finished)
        while frontier:
            edges = [e for p in sorted(frontier) for e in self._children.get(p, ())]
            if not edges:
                break
            waiting = {
                c: rows[c].parents_left
                for c, _, _ in edges
                if c in rows and rows[c].status is JobStatus.WAITING
            }
            plan = plan_release(frontier, edges, waiting)
            for child, error in plan.cancel:
                r = rows[child]
                r.status, r.error, r.parents_left = JobStatus.CANCELLED, error, 0
                r.finished_at = r.updated_at = now
                r.unique_key = None
            for child, left in plan.count_down:
                rows[child].parents_left = left
            for child in plan.release:
                r = rows[child]
                r.status, r.parents_left, r.updated_at = JobStatus.TODO, 0, now
                r.run_at = max(r.run_at, now)
                r.dispatched_at = None
                released.append(r.record())
            frontier = {c: JobStatus.CANCELLED for c, _ in plan.cancel}
        return released

    def results(self, child: str) -> list[tuple[str, JobStatus, str | None]]:
        rows = self._table.rows
        parents = sorted(
            p for p, edges in self._children.items() if any(e[0] == child for e in edges)
        )
        return [(p, rows[p].status, rows[p].result) for p in parents if p in rows]
