"""The garbage collector while a runner runs.

A runner allocates and frees a few dozen container objects per job (tasks, futures,
contexts, messages), nearly all freed by reference counting. At Python's default
young-generation threshold (700 net allocations) that meant a collection every ~20 jobs,
each promoting the objects of the jobs then in flight, and every few thousand jobs a full
collection scanning the whole heap of imported modules (~45 ms each here). Measured on a
20,000-job drain (``benchmarks/cost_model.md``): ~17 µs of a job's ~65 µs of runner CPU
went to the collector, and a full collection stalls every job in flight. So the runner
freezes what is alive once it has started (``gc.freeze``: imported modules, the app, the
connection pools; full collections skip them) and raises the young threshold; both are
put back when the last runner of the process stops.
"""

from __future__ import annotations

import gc

_users = 0
_saved: tuple[int, int, int] | None = None
_froze = False


def tune(threshold: int | None) -> bool:
    """Freeze the objects alive now and collect the young generation every ``threshold``
    net allocations; returns whether anything was changed (pair with :func:`restore`)."""
    global _users, _saved, _froze
    if threshold is None:
        return False
    if _users == 0:
        _saved = gc.get_threshold()
        _froze = gc.get_freeze_count() == 0  # else the app froze its own: leave that be
        if _froze:
            gc.collect()  # garbage of the startup is freed, not frozen
            gc.freeze()
        _, g1, g2 = _saved
        gc.set_threshold(max(threshold, _saved[0]), g1, g2)
    _users += 1
    return True


def restore() -> None:
    """Undo :func:`tune` once every runner of the process that tuned has stopped."""
    global _users, _saved, _froze
    _users -= 1
    if _users == 0 and _saved is not None:
        gc.set_threshold(*_saved)
        if _froze:
            gc.unfreeze()
        _saved, _froze = None, False
