"""What aqueue needs of a message broker, as interfaces: :class:`MessageBroker` (the
ready lists, working lists, delayed set, suspect lanes, epoch, locks and runner
liveness of one queue) and :class:`FinishWaiters` (wake-ups for ``job.result()``).

``broker.Broker`` (Redis) and ``aqueue.testing``'s in-memory broker implement them; the
contract tests (``tests/contract``) run one behavioural suite over both. Messages are
opaque strings or bytes here: a broker never parses one, except to read the priority
of a delayed message it makes due (see ``promote``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from .broker import Keys


class MessageBroker(Protocol):
    """The dispatch side of one queue. Every method raises ``BrokerError`` when the
    broker cannot be reached; messages taken out come back as bytes."""

    keys: Keys
    """The names of the queue's keys; the recovery passes' lock names come from here."""

    async def close(self) -> None: ...

    async def maxmemory_policy(self) -> str | None:
        """The eviction policy (None: unknown). Anything but ``noeviction`` is warned of."""
        ...

    async def dispatch(
        self,
        ready: Sequence[str | bytes],
        delayed: Sequence[tuple[int, str | bytes]],
        *,
        high: Sequence[str | bytes] = (),
        low: Sequence[str | bytes] = (),
    ) -> str:
        """Push to the ready lists of each level (a wake-up token beside high/low ones)
        and to the delayed set (score: due time in ms); returns the epoch of the dataset
        that took them."""
        ...

    async def notify_finished(self, job_ids: Sequence[str]) -> None:
        """Tell result waiters that these jobs reached a final state."""
        ...

    async def take(self, runner_id: str, count: int) -> list[bytes]:
        """Move up to ``count`` ready messages, by priority, into the runner's working
        list (wake-up tokens are dropped)."""
        ...

    async def wait_one(self, runner_id: str, timeout: float) -> bytes | None:
        """Block up to ``timeout`` s for a normal-level message and move it into the
        working list; ``b""`` when woken for a high/low one, None on timeout."""
        ...

    async def settle(
        self,
        runner_id: str,
        remove: Sequence[bytes],
        ready: Sequence[str | bytes] = (),
        delayed: Sequence[tuple[int, str | bytes]] = (),
        finished: Sequence[str] = (),
    ) -> int:
        """Atomically: remove deliveries from the working list, push ``ready`` on the
        consuming end of the normal list and ``delayed`` to the delayed set, notify
        ``finished``. Returns the number of working entries removed."""
        ...

    async def admit(
        self, runner_id: str, requests: Sequence[tuple[str, str, int, int, bytes]]
    ) -> list[int]:
        """Rate limits, atomically for the batch: ``requests`` are ``(limit state key,
        job id, interval µs, tolerance µs, message)`` (GCRA, ``aqueue._ratelimit``).
        Returns each one's wait in µs: 0 to start now; else its message has moved from
        the working list to the delayed set, due at the time reserved for it."""
        ...

    async def back_off(self, state_key: str, delay_us: int, tolerance_us: int) -> int:
        """No start under this limit state for ``delay_us``; returns µs until it ends."""
        ...

    async def promote(self, limit: int = 1000) -> tuple[int, int]:
        """Move due delayed messages to the ready list of their level (by the broker's
        clock). Returns ``(moved, ms until the next due one or -1)``."""
        ...

    async def requeue_all(self, runner_id: str) -> int:
        """Move the whole working list back to the consuming end of the normal list."""
        ...

    async def working_items(self, runner_id: str) -> list[bytes]: ...

    async def heartbeat(self, runner_id: str, ttl_ms: int) -> None:
        """The runner is alive for ``ttl_ms`` more; it is listed among the runners."""
        ...

    async def runners(self) -> dict[str, bool]:
        """Runners seen on this queue, and whether they are still alive."""
        ...

    async def dispatch_suspects(
        self, messages: Sequence[str | bytes], alone: Sequence[str | bytes] = ()
    ) -> str:
        """Push to the suspect lanes (group, alone); returns the epoch."""
        ...

    async def take_suspect(self, runner_id: str, *, alone: bool = False) -> bytes | None: ...

    async def suspects_waiting(self) -> int: ...

    async def publish_stats(self, runner_id: str, stats: dict[str, int], ttl_ms: int) -> None: ...

    async def runner_stats(self) -> dict[str, dict[str, int]]: ...

    async def forget_runner(self, runner_id: str) -> None: ...

    async def epoch(self) -> str:
        """The dataset's epoch, created if missing: a change means the data was lost."""
        ...

    async def lengths(self) -> tuple[int, int]:
        """``(messages ready in every list and lane, messages delayed)``."""
        ...

    async def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        """A lock that expires after ``ttl_ms``: its token, or None when it is held."""
        ...

    async def release_lock(self, key: str, token: str) -> bool:
        """Delete the lock only while it holds ``token``."""
        ...

    async def purge(self) -> None:
        """Delete every key of the queue (lists, sets, epoch, runners' lists)."""
        ...


class FinishWaiters(Protocol):
    """Wake-ups for producers waiting on ``job.result()`` (a hint: waiters re-read SQL)."""

    def watch(self, job_id: str) -> asyncio.Event:
        """An event set when the job is reported finished."""
        ...

    def unwatch(self, job_id: str, ev: asyncio.Event) -> None: ...

    async def close(self) -> None: ...


__all__ = ["FinishWaiters", "MessageBroker"]
