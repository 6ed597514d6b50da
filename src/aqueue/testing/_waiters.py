"""Result waiters' wake-ups from an in-memory broker's finish notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ._broker import MemoryBroker


class MemoryFinishWaiters:
    """Result waiters' wake-ups from a :class:`MemoryBroker`'s finish notifications."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._waiters: dict[str, set[asyncio.Event]] = {}
        broker.subscribe_finished(self._on_finished)

    def _on_finished(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            for ev in self._waiters.get(job_id, ()):
                ev.set()

    def watch(self, job_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(ev)
        return ev

    def unwatch(self, job_id: str, ev: asyncio.Event) -> None:
        evs = self._waiters.get(job_id)
        if evs is not None:
            evs.discard(ev)
            if not evs:
                del self._waiters[job_id]

    async def close(self) -> None:
        self._broker.unsubscribe_finished(self._on_finished)


__all__ = ["MemoryFinishWaiters"]
