"""Calling aqueue's coroutines from code without an event loop: WSGI views, scripts,
and sync handlers running in a runner's thread pool.

Outside a runner, the coroutine runs on one background event loop per process (a daemon
thread started at first use). A queue's backend is connected on the loop that uses it,
so every sync call of a process shares one set of connections. Inside a sync handler the
coroutine goes to the runner's own loop instead (``handler_loop``, set by the runner in
the handler's thread): the queue's backend already lives there, and a second loop would
make the queue reconnect on it.

Fork-safe: a forked child (gunicorn's pre-fork workers, ``multiprocessing`` with the fork
start method) inherits the parent's loop object but not its thread, so it starts its own
loop at its first call (``os.register_at_fork`` forgets the parent's; the process id is
checked too). A queue used in the parent then connects again in the child, on that loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._errors import ConfigurationError

T = TypeVar("T")

handler_loop: contextvars.ContextVar[asyncio.AbstractEventLoop | None] = contextvars.ContextVar(
    "aqueue_handler_loop", default=None
)
"""The runner's loop, in the thread of a sync handler it runs."""


class _LoopThread:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="aqueue-sync-loop", daemon=True
        )
        self.thread.start()
        ready.wait()
        atexit.register(self.stop)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def stop(self) -> None:
        """At exit: end the loop's tasks (idle batchers, listeners) before the thread,
        a daemon, is dropped (else each one is reported destroyed while pending)."""
        if self.pid != os.getpid() or not self.thread.is_alive():
            return

        async def end_tasks() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(end_tasks(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


_lock = threading.Lock()
_background: _LoopThread | None = None


def _forget_after_fork() -> None:
    global _background, _lock
    _background = None
    _lock = threading.Lock()  # the parent may have held it while forking


os.register_at_fork(after_in_child=_forget_after_fork)


def background_loop() -> asyncio.AbstractEventLoop:
    """This process's background loop, started at first use (again after a fork)."""
    global _background
    bg = _background
    if bg is not None and bg.pid == os.getpid():
        return bg.loop
    with _lock:
        if _background is None or _background.pid != os.getpid():
            _background = _LoopThread()
        return _background.loop


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` returns to completion and return its result (or raise
    its exception) from a thread without a running event loop. Thread-safe."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        raise ConfigurationError(
            "a *_sync method was called in a running event loop, which it would block "
            "(and deadlock if the loop serves the call): await the async method instead"
        )
    loop = handler_loop.get() or background_loop()
    return asyncio.run_coroutine_threadsafe(make(), loop).result()
