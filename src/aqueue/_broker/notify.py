"""Finish notifications: runners publish the ids of jobs that reached a final state on
``{tag}:finished`` (one PUBLISH per finish batch); a producer waiting on
``job.result()`` is woken by them instead of polling SQL in a tight loop. Pub/sub is only
a hint: waiters still re-read SQL, and poll it slowly in case a message was missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as rexc

log = logging.getLogger("aqueue.notify")


class FinishListener:
    def __init__(self, redis: aioredis.Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def watch(self, job_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(ev)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._listen(), name="aqueue-finish-listener"
            )
        return ev

    def unwatch(self, job_id: str, ev: asyncio.Event) -> None:
        evs = self._waiters.get(job_id)
        if evs is not None:
            evs.discard(ev)
            if not evs:
                del self._waiters[job_id]

    async def _listen(self) -> None:
        while not self._closed and self._waiters:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                while not self._closed and self._waiters:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg and isinstance(msg.get("data"), bytes):
                        for job_id in msg["data"].decode().split():
                            for ev in self._waiters.get(job_id, ()):
                                ev.set()
            except (rexc.RedisError, OSError) as exc:
                log.debug("finish listener: %s; reconnecting", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(rexc.RedisError, OSError):
                    # typed in some redis-py releases, not in others: Any fits both
                    await cast(Any, pubsub).aclose()

    async def close(self) -> None:
        """Stop listening now. The listener only reads hints (waiters also poll), so it
        is cancelled rather than left to notice ``_closed`` at its next read timeout, a
        second away: closing a queue that waited for a result takes no time."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})  # its cancellation is its own: not raised here
