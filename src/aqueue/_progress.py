"""A running job's progress, throttled: at most one write per job per ``interval``
seconds, whatever the handler reports. A value reported between writes is kept and
written at the next allowed moment (a timer), or when the attempt ends, before its
outcome is recorded: the last value reported is never dropped, only the ones a later
value replaced before they were written. Each write is fenced by the run's lease token
(a run that lost its lease writes nothing).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from ._errors import BackendError, ConfigurationError

log = logging.getLogger("aqueue.runner")

INTERVAL = 1.0
"""Seconds between two progress writes of one job."""
MAX_MESSAGE = 255
"""The ``progress_message`` column's width; a longer message is cut (its end marked)."""

Write = Callable[[float, "str | None"], Awaitable[bool]]


def checked(value: float, message: str | None) -> tuple[float, str | None]:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigurationError(f"progress must be a number from 0 to 1, got {value!r}")
    if math.isnan(value):
        raise ConfigurationError("progress must be a number from 0 to 1, got nan")
    if message is not None:
        message = str(message)
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
    return float(value), message


class Progress:
    """The progress writes of one run of one job."""

    def __init__(self, job_id: str, write: Write, interval: float = INTERVAL) -> None:
        self.job_id = job_id
        self._write = write
        self._interval = interval
        self._last = -math.inf  # monotonic time of the last write
        self._pending: tuple[float, str | None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.writes = 0
        self.lost = False  # the lease was gone at a write: nothing more is written
        self._closed = False

    async def report(self, value: float, message: str | None) -> None:
        self._pending = checked(value, message)
        if self.lost or self._timer is not None:
            return  # the timer writes the latest value
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            await self._flush()
        else:
            self._timer = asyncio.get_running_loop().create_task(self._later(wait))

    async def _later(self, wait: float) -> None:
        await asyncio.sleep(wait)  # the throttle's own delay
        self._timer = None
        await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            if self._pending is None or self.lost:
                return
            value, message = self._pending
            self._pending = None
            self._last = time.monotonic()
            try:
                written = await self._write(value, message)
            except asyncio.CancelledError:
                # the timer cancelled by close(), which writes the value itself
                if self._pending is None:
                    self._pending = (value, message)
                raise
            except BackendError as exc:
                if self._closed:
                    log.warning("job %s: last progress not recorded (%s)", self.job_id, exc)
                    return
                log.warning("job %s: progress not recorded (%s); trying again", self.job_id, exc)
                if self._pending is None:
                    self._pending = (value, message)
                if self._timer is None:
                    loop = asyncio.get_running_loop()
                    self._timer = loop.create_task(self._later(self._interval))
                return
            self.writes += 1
            if not written:
                self.lost = True
                log.info("job %s: progress not recorded (its lease is gone)", self.job_id)

    async def close(self) -> None:
        """The attempt ended: write the value still pending now (before the outcome)."""
        self._closed = True
        self.cancel()
        await self._flush()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
