"""``--processes N``: run N runner processes, each with its own event loop, and restart
one that dies. Signals are forwarded; the supervisor exits when every child has."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("aqueue.supervisor")


def supervise(child_argv: Sequence[str], processes: int, *, burst: bool) -> int:
    """Run ``python -m aqueue <child_argv>`` N times; return the exit code."""
    stopping = threading.Event()
    children: dict[int, subprocess.Popen[bytes]] = {}
    restarts: dict[int, list[float]] = {i: [] for i in range(processes)}

    def start(slot: int) -> None:
        env = dict(os.environ, AQUEUE_PROCESS_SLOT=str(slot))
        # Own process group: a terminal's Ctrl-C reaches only the supervisor, which
        # forwards it once (a runner that got it twice would skip its grace period).
        children[slot] = subprocess.Popen(
            [sys.executable, "-m", "aqueue", *child_argv], env=env, process_group=0
        )
        log.info("started runner process %d (pid %d)", slot, children[slot].pid)

    def forward(signum: int, _frame: object) -> None:
        if stopping.is_set():
            log.warning("second signal: forwarding again")
        stopping.set()
        for p in children.values():
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(processes):
            start(i)
        failed = False
        while True:
            alive = False
            for slot, p in list(children.items()):
                code = p.poll()
                if code is None:
                    alive = True
                    continue
                if stopping.is_set() or (burst and code == 0):
                    continue
                failed = failed or code != 0
                recent = [t for t in restarts[slot] if time.monotonic() - t < 60]
                delay = min(30.0, 0.5 * 2 ** len(recent))
                log.error(
                    "runner process %d (pid %d) exited with %d; restarting in %.1fs",
                    slot,
                    p.pid,
                    code,
                    delay,
                )
                restarts[slot] = [*recent, time.monotonic()]
                if stopping.wait(delay):
                    continue
                start(slot)
                alive = True
            if not alive:
                break
            time.sleep(0.2)
        codes = [p.returncode for p in children.values()]
        return 0 if stopping.is_set() or all(c == 0 for c in codes) else 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
