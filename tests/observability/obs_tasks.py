"""The observability tests' tasks, registered on a queue by ``register``."""

from __future__ import annotations

import logging

from aqueue import Backoff, Queue, current_job

log = logging.getLogger("obs_app")


def register(q: Queue) -> Queue:
    """The tests' tasks: ``ok`` returns its argument, ``boom`` fails for good (it logs
    first), ``flaky`` fails its first attempt and succeeds on its retry."""

    @q.task()
    async def ok(x: int) -> int:
        log.info("ok got %d", x)
        return x

    @q.task(retries=0)
    async def boom(why: str) -> None:
        log.error("boom is about to fail: %s", why)
        raise ValueError(why)

    @q.task(retries=1, backoff=Backoff.sequence(0.05))
    async def flaky() -> str:
        if current_job().attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    return q
