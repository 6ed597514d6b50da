"""Acceptance-test app for the embedded default: no URL anywhere (copied as ``app.py``)."""

from __future__ import annotations

from aqueue import Queue

queue = Queue("emb")


@queue.task
async def square(x: int) -> int:
    return x * x
