"""Identifiers and the wall clock they are made from: job ids (UUIDv7, time-ordered),
lease tokens, runner ids, and ``now_us``. Code that must follow a test's clock takes
a clock as a parameter (the runner's ``clock``, the queue's producer-side clock) instead
of reading ``now_us`` directly; job ids always read the real time (they only need to be
unique and roughly ordered)."""

from __future__ import annotations

import os
import secrets
import threading
import time


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


class _Entropy:
    """``os.urandom`` read 4 KiB at a time (a system call per job id cost more than the
    rest of making one), refilled in a forked child so that two processes never share
    the bytes."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._lock = threading.Lock()  # producers in several threads never share bytes
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._buf, self._pos = b"", 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bytes:
        with self._lock:
            start, end = self._pos, self._pos + n
            if end > len(self._buf):
                self._buf, start, end = os.urandom(max(4096, n)), 0, n
            self._pos = end
            return self._buf[start:end]


_entropy = _Entropy()


def new_job_id() -> str:
    """A UUIDv7 string: time-ordered (good for InnoDB's clustered index) and unique
    without coordination between producers (74 random bits per millisecond)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_entropy.take(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b (62 bits)
    h = f"{value:032x}"
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def new_job_ids(n: int) -> list[str]:
    """``n`` UUIDv7 strings for one batch (``enqueue_many``). Up to 65,536 of them share
    one millisecond and 58 random bits, and count up in their last four hex digits, so
    the batch is one contiguous range of ids: it is marked dispatched with a range
    instead of a list (``id_runs``)."""
    ms = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    out: list[str] = []
    chunks = range(0, n, 1 << 16)
    rands = sorted(int.from_bytes(secrets.token_bytes(8), "big") >> 6 for _ in chunks)
    for start, rand in zip(chunks, rands, strict=True):  # sorted: the batch ascends
        value = ms << 80 | 0x7 << 76 | (rand >> 46) << 64 | 0b10 << 62
        value |= (rand & ((1 << 46) - 1)) << 16  # rand_b: 46 random bits, then the counter
        h = f"{value:032x}"
        prefix = f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:28]}"
        out.extend([f"{prefix}{i:04x}" for i in range(min(1 << 16, n - start))])
    return out


def new_token() -> str:
    """A fresh lease (fencing) token."""
    return secrets.token_hex(8)


def new_runner_id() -> str:
    host = os.uname().nodename.split(".")[0][:20] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
