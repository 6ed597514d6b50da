"""A clock that stands still until a test moves it."""

from __future__ import annotations

from .._ids import now_us


class FakeClock:
    """Wall time in UNIX microseconds that changes only when :meth:`advance` (or
    :meth:`set`) moves it: delays, retries' backoff, leases and cron ticks then happen
    exactly when a test says so. Starts at the real time unless given ``start``."""

    __slots__ = ("_now",)

    def __init__(self, start: int | None = None) -> None:
        self._now = now_us() if start is None else int(start)

    def __call__(self) -> int:
        return self._now

    def now(self) -> int:
        """The current time (UNIX µs)."""
        return self._now

    def time(self) -> float:
        """The current time in seconds, like ``time.time()``."""
        return self._now / 1e6

    def advance(self, seconds: float) -> int:
        """Move the clock forward by ``seconds``; returns the new time (µs)."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += round(seconds * 1e6)
        return self._now

    def set(self, at_us: int) -> None:
        """Move the clock to ``at_us`` (UNIX µs), not backwards."""
        if at_us < self._now:
            raise ValueError("a clock only moves forward")
        self._now = int(at_us)

    def __repr__(self) -> str:
        return f"<FakeClock {self._now}>"
