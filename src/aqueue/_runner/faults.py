"""Crash points for the fault-injection suite.

``AQUEUE_TEST_CRASH_AT=<point>[:<n>]`` makes the process ``os._exit(86)`` the n-th time
(default: first) it reaches ``<point>``: ``after_fetch`` (messages moved into the working
list, not claimed), ``after_handler`` (handler returned, outcome not recorded),
``after_commit`` (outcome recorded in SQL, message not yet removed from Redis). Unset in
production: the check is one dictionary lookup.
"""

from __future__ import annotations

import os
import sys

_SPEC = os.environ.get("AQUEUE_TEST_CRASH_AT", "")
_POINT, _, _N = _SPEC.partition(":")
_LEFT = {_POINT: int(_N or "1")} if _POINT else {}

EXIT_CODE = 86


def crash_point(name: str) -> None:
    left = _LEFT.get(name)
    if left is None:
        return
    left -= 1
    _LEFT[name] = left
    if left <= 0:
        sys.stderr.write(f"aqueue: test crash point {name} reached: exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
