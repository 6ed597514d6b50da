"""A thread that notices when the event loop is blocked and says where."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger("aqueue.watchdog")


class Watchdog:
    """The loop bumps a timestamp every ``threshold / 4``; a daemon thread reports (once
    per stall, with the loop thread's stack) when it is older than ``threshold``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.loop = loop
        self.threshold = threshold
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._handle: asyncio.TimerHandle | None = None
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="aqueue-watchdog", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        self._last = time.monotonic()
        if not self._stop.is_set():
            self._handle = self.loop.call_later(self.threshold / 4, self._tick)

    def _watch(self) -> None:
        reported = False
        while not self._stop.wait(self.threshold / 4):
            lag = time.monotonic() - self._last
            if lag > self.threshold and not reported:
                reported = True
                frame = sys._current_frames().get(self._loop_thread)
                where = "".join(traceback.format_stack(frame, limit=8)) if frame else "?"
                log.warning(
                    "event loop blocked for %.1fs (threshold %.1fs); a blocking call in a "
                    "handler delays every job of this runner and can cost it its leases:\n%s",
                    lag,
                    self.threshold,
                    where,
                )
            elif lag <= self.threshold:
                reported = False

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
