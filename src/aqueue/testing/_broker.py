"""An in-memory message broker: the ``MessageBroker`` interface with the Redis broker's
semantics (its Lua scripts', step for step).

Lists are deques whose left end is Redis' head (``LPUSH``) and whose right end is the
consuming end (``RPOP``, ``BLMOVE ... RIGHT``). Expiry (locks, liveness, stats) and the
delayed set's due times follow the broker's ``clock`` (UNIX µs), as Redis' follow its
own: with a ``FakeClock`` they move only when the test moves it."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Callable, Sequence

from .._broker.broker import WAKE, Keys
from .._errors import BrokerError
from .._ids import now_us
from .._message import message_job_id
from .._ratelimit import gcra_back_off, gcra_request, state_ttl_ms


def _b(message: str | bytes) -> bytes:
    return message.encode() if isinstance(message, str) else message


def _level(message: bytes) -> int:
    """The priority field ``r`` of a message (0 when absent or unreadable), as
    ``promote.lua`` reads it."""
    if b'"r":' not in message:
        return 0
    try:
        obj = json.loads(message)
    except ValueError:
        return 0
    r = obj.get("r") if isinstance(obj, dict) else None
    return int(r) if isinstance(r, int | float) and not isinstance(r, bool) else 0


class MemoryBroker:
    """The dispatch side of one queue, in memory. ``lose_data()`` plays a Redis that
    restarted empty (a new epoch is created at the next use)."""

    def __init__(
        self, prefix: str = "aq", queue: str = "default", clock: Callable[[], int] | None = None
    ) -> None:
        self.keys = Keys(prefix, queue)
        self._clock = clock or now_us
        self._lists: dict[str, deque[bytes]] = {}
        self._delayed: dict[bytes, int] = {}
        self._epoch: str | None = None
        self._expiring: dict[str, tuple[str, int]] = {}  # key -> (value, expires at µs)
        self._runners: set[str] = set()
        self._stats: dict[str, tuple[dict[str, int], int]] = {}
        self._limits: dict[str, tuple[dict[str, int], int]] = {}  # state, expires at µs
        self._takes = 0
        self._pushed = asyncio.Event()
        self._finish_subscribers: list[Callable[[Sequence[str]], None]] = []
        self.closed = False

    # -- plumbing -------------------------------------------------------------------

    def _list(self, key: str) -> deque[bytes]:
        return self._lists.setdefault(key, deque())

    def _lpush(self, key: str, messages: Sequence[str | bytes]) -> None:
        lst = self._list(key)
        for m in messages:
            lst.appendleft(_b(m))
        if messages:
            self._wake()

    def _wake(self) -> None:
        self._pushed.set()
        self._pushed = asyncio.Event()

    def _ensure_epoch(self) -> str:
        if self._epoch is None:
            self._epoch = secrets.token_hex(8)
        return self._epoch

    def _get(self, key: str) -> str | None:
        entry = self._expiring.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._expiring[key]
            return None
        return entry[0]

    async def _step(self) -> None:
        if self.closed:
            raise BrokerError("the memory broker is closed")
        await asyncio.sleep(0)

    def subscribe_finished(self, fn: Callable[[Sequence[str]], None]) -> None:
        """Call ``fn(job_ids)`` on every finish notification."""
        self._finish_subscribers.append(fn)

    def unsubscribe_finished(self, fn: Callable[[Sequence[str]], None]) -> None:
        if fn in self._finish_subscribers:
            self._finish_subscribers.remove(fn)

    def _publish_finished(self, job_ids: Sequence[str]) -> None:
        for fn in list(self._finish_subscribers):
            fn(job_ids)

    def lose_data(self) -> None:
        """Forget everything, as a Redis restarted without its data."""
        self._lists.clear()
        self._delayed.clear()
        self._expiring.clear()
        self._runners.clear()
        self._stats.clear()
        self._limits.clear()
        self._epoch = None

    def delayed_jobs(self) -> dict[str, int]:
        """Job id -> due time (µs, the latest of its copies) of each delayed message."""
        out: dict[str, int] = {}
        for m, due_ms in self._delayed.items():
            job_id = message_job_id(m)
            if job_id is not None:
                out[job_id] = max(out.get(job_id, 0), due_ms * 1000)
        return out

    def idle(self) -> bool:
        """Nothing ready, in a suspect lane or in any working list (delayed ones may
        wait): for tests that wait until every message was handled."""
        return not any(m != WAKE for lst in self._lists.values() for m in lst)

    async def close(self) -> None:
        self.closed = True
        self._wake()

    async def maxmemory_policy(self) -> str | None:
        await self._step()
        return "noeviction"

    # -- producer side --------------------------------------------------------------

    async def dispatch(
        self,
        ready: Sequence[str | bytes],
        delayed: Sequence[tuple[int, str | bytes]],
        *,
        high: Sequence[str | bytes] = (),
        low: Sequence[str | bytes] = (),
    ) -> str:
        await self._step()
        self._lpush(self.keys.ready_high, high)
        self._lpush(self.keys.ready_low, low)
        if high or low:
            self._lpush(self.keys.ready, [WAKE])
        self._lpush(self.keys.ready, ready)
        for score, m in delayed:
            self._delayed[_b(m)] = score
        return self._ensure_epoch()

    async def notify_finished(self, job_ids: Sequence[str]) -> None:
        await self._step()
        if job_ids:
            self._publish_finished(job_ids)

    # -- runner side ------------------------------------------------------------------

    async def take(self, runner_id: str, count: int) -> list[bytes]:
        await self._step()
        self._takes += 1
        k = self._takes % 10
        order = "lhn" if k == 9 else "nhl" if k == 4 else "hnl"
        level = {"h": self.keys.ready_high, "n": self.keys.ready, "l": self.keys.ready_low}
        out: list[bytes] = []
        for c in order:
            lst = self._list(level[c])
            while len(out) < count and lst:
                m = lst.pop()
                if m != WAKE:
                    out.append(m)
        working = self._list(self.keys.working(runner_id))
        for m in out:
            working.appendleft(m)
        return out

    async def wait_one(self, runner_id: str, timeout: float) -> bytes | None:
        await self._step()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ready = self._list(self.keys.ready)
        while not ready:
            left = deadline - loop.time()
            if left <= 0 or self.closed:
                return None
            try:
                async with asyncio.timeout(left):
                    await self._pushed.wait()
            except TimeoutError:
                return None
        m = ready.pop()
        if m == WAKE:  # a high/low message arrived: the caller takes by priority
            return b""
        self._list(self.keys.working(runner_id)).appendleft(m)
        return m

    async def settle(
        self,
        runner_id: str,
        remove: Sequence[bytes],
        ready: Sequence[str | bytes] = (),
        delayed: Sequence[tuple[int, str | bytes]] = (),
        finished: Sequence[str] = (),
    ) -> int:
        await self._step()
        working = self._list(self.keys.working(runner_id))
        removed = 0
        for gone in remove:
            removed += _remove_from_tail(working, gone)
        # on the consuming end of the normal list
        self._list(self.keys.ready).extend(_b(m) for m in ready)
        if ready:
            self._wake()
        for score, later in delayed:
            self._delayed[_b(later)] = score
        if finished:
            self._publish_finished(finished)
        return removed

    # -- rate limits: aqueue._ratelimit's GCRA steps, as ratelimit.lua runs them -----

    def _limit_state(self, key: str, now: int) -> dict[str, int]:
        entry = self._limits.get(key)
        if entry is None or entry[1] <= now:
            return {}
        return entry[0]

    def _keep_limit(self, key: str, state: dict[str, int], now: int) -> None:
        self._limits[key] = (state, now + state_ttl_ms(state, now) * 1000)

    async def admit(
        self, runner_id: str, requests: Sequence[tuple[str, str, int, int, bytes]]
    ) -> list[int]:
        await self._step()
        now = self._clock()
        working = self._list(self.keys.working(runner_id))
        waits: list[int] = []
        for key, job_id, interval, tolerance, raw in requests:
            state = self._limit_state(key, now)
            wait = gcra_request(state, job_id, now, interval, tolerance)
            self._keep_limit(key, state, now)
            if wait:
                _remove_from_tail(working, raw)
                self._delayed[raw] = (now + wait) // 1000  # on time from its ms
            waits.append(wait)
        return waits

    async def back_off(self, state_key: str, delay_us: int, tolerance_us: int) -> int:
        await self._step()
        now = self._clock()
        state = self._limit_state(state_key, now)
        left = gcra_back_off(state, now, delay_us, tolerance_us)
        self._keep_limit(state_key, state, now)
        return left

    async def promote(self, limit: int = 1000) -> tuple[int, int]:
        await self._step()
        now = self._clock() // 1000
        due = sorted((s, m) for m, s in self._delayed.items() if s <= now)[:limit]
        woke = False
        for _, m in due:
            del self._delayed[m]
            r = _level(m)
            if r > 0:
                self._lpush(self.keys.ready_high, [m])
                woke = True
            elif r < 0:
                self._lpush(self.keys.ready_low, [m])
                woke = True
            else:
                self._lpush(self.keys.ready, [m])
        if woke:
            self._lpush(self.keys.ready, [WAKE])
        if not self._delayed:
            return len(due), -1
        return len(due), max(0, min(self._delayed.values()) - now)

    async def requeue_all(self, runner_id: str) -> int:
        await self._step()
        working = self._list(self.keys.working(runner_id))
        ready = self._list(self.keys.ready)
        n = len(working)
        while working:
            ready.append(working.popleft())
        if n:
            self._wake()
        return n

    async def working_items(self, runner_id: str) -> list[bytes]:
        await self._step()
        return list(self._list(self.keys.working(runner_id)))

    async def heartbeat(self, runner_id: str, ttl_ms: int) -> None:
        await self._step()
        self._expiring[self.keys.alive(runner_id)] = ("1", self._clock() + ttl_ms * 1000)
        self._runners.add(runner_id)

    async def runners(self) -> dict[str, bool]:
        await self._step()
        return {r: self._get(self.keys.alive(r)) is not None for r in self._runners}

    async def dispatch_suspects(
        self, messages: Sequence[str | bytes], alone: Sequence[str | bytes] = ()
    ) -> str:
        await self._step()
        self._lpush(self.keys.suspects, messages)
        self._lpush(self.keys.suspects_alone, alone)
        return self._ensure_epoch()

    async def take_suspect(self, runner_id: str, *, alone: bool = False) -> bytes | None:
        await self._step()
        lane = self._list(self.keys.suspects_alone if alone else self.keys.suspects)
        if not lane:
            return None
        m = lane.pop()
        self._list(self.keys.working(runner_id)).appendleft(m)
        return m

    async def suspects_waiting(self) -> int:
        await self._step()
        return len(self._list(self.keys.suspects)) + len(self._list(self.keys.suspects_alone))

    async def publish_stats(self, runner_id: str, stats: dict[str, int], ttl_ms: int) -> None:
        await self._step()
        old = self._live_stats(runner_id)
        self._stats[runner_id] = ({**old, **stats}, self._clock() + ttl_ms * 1000)

    def _live_stats(self, runner_id: str) -> dict[str, int]:
        entry = self._stats.get(runner_id)
        if entry is None or entry[1] <= self._clock():
            self._stats.pop(runner_id, None)
            return {}
        return entry[0]

    async def runner_stats(self) -> dict[str, dict[str, int]]:
        runners = list(await self.runners())
        out = {r: dict(self._live_stats(r)) for r in runners}
        return {r: s for r, s in out.items() if s}

    async def forget_runner(self, runner_id: str) -> None:
        await self._step()
        self._expiring.pop(self.keys.alive(runner_id), None)
        self._runners.discard(runner_id)

    async def epoch(self) -> str:
        await self._step()
        return self._ensure_epoch()

    async def lengths(self) -> tuple[int, int]:
        await self._step()
        k = self.keys
        ready = sum(
            len(self._list(key))
            for key in (k.ready, k.suspects, k.ready_high, k.ready_low, k.suspects_alone)
        )
        return ready, len(self._delayed)

    async def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        await self._step()
        if self._get(key) is not None:
            return None
        token = secrets.token_hex(8)
        self._expiring[key] = (token, self._clock() + ttl_ms * 1000)
        return token

    async def release_lock(self, key: str, token: str) -> bool:
        await self._step()
        if self._get(key) != token:
            return False
        del self._expiring[key]
        return True

    async def purge(self) -> None:
        await self._step()
        k = self.keys
        for key in (k.ready, k.suspects, k.ready_high, k.ready_low, k.suspects_alone):
            self._lists.pop(key, None)
        for r in self._runners:
            self._lists.pop(k.working(r), None)
            self._expiring.pop(k.alive(r), None)
        self._runners.clear()
        self._delayed.clear()
        self._epoch = None


def _remove_from_tail(lst: deque[bytes], m: bytes) -> int:
    """``LREM key -1 m``: the occurrence nearest the tail."""
    for i in range(len(lst) - 1, -1, -1):
        if lst[i] == m:
            del lst[i]
            return 1
    return 0


__all__ = ["MemoryBroker"]
