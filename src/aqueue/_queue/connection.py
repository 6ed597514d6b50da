"""The backend's lifecycle: connected at first use in the running event loop (again
in another loop), from the URLs (the embedded default when they are missing) or from
the private parts factory ``aqueue.testing`` sets; the insert batcher's flush, which
stores each batch of enqueues and dispatches it; ``connect``/``close`` and ``async
with``. A mixin of the client (see ``aqueue._queue``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Self

from .._backend import Backend
from .._broker.base import FinishWaiters, MessageBroker
from .._broker.broker import Broker
from .._broker.notify import FinishListener
from .._dispatch import Dispatcher
from .._errors import BrokerError
from .._models import NewJob
from .._store.base import JobStore
from .._store.batcher import Batcher
from .._store.marker import DispatchMarker
from .._store.store import Store
from .base import QueueBase

log = logging.getLogger("aqueue")


class Connection(QueueBase):
    """Owns the queue's backend: built on first use, closed by :meth:`close`."""

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._be_lock is None or self._be_lock_loop is not loop:
            self._be_lock = asyncio.Lock()
            self._be_lock_loop = loop
        return self._be_lock

    async def _backend(self) -> Backend:
        be = self._be
        loop = asyncio.get_running_loop()
        if be is not None and be.loop is loop:
            return be
        async with self._lock():
            if self._be is not None and self._be.loop is loop:
                return self._be
            self._be = await self._connect(loop)
            return self._be

    async def _resolve_urls(self) -> tuple[str, str]:
        redis_url, db_url = self._redis_url, self._database_url
        if redis_url and db_url:
            return redis_url, db_url
        from .. import _embedded

        home = _embedded.embedded_dir(self._home)
        if not db_url:
            db_url = _embedded.sqlite_url(home)
        if not redis_url:
            redis_url = await asyncio.to_thread(_embedded.ensure_embedded_redis, home)
        log.info("aqueue embedded default in %s", home)
        return redis_url, db_url

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Backend:
        if self._parts_factory is not None:
            store, broker, listener = await self._parts_factory()
        else:
            store, broker, listener = await self._connect_parts()
        marker = DispatchMarker(store, clock=self._clock)
        dispatcher = Dispatcher(broker)
        inserter: Batcher[NewJob, str] = Batcher(
            "enqueue",
            lambda jobs: self._flush_inserts(store, dispatcher, marker, jobs),
            max_items=self.enqueue_batch or (1000 if store.single_writer else 500),
            max_bytes=8 * 1024 * 1024,
            size_of=lambda j: len(j.payload) + 200,
            parallel=1 if store.single_writer else 4,
        )
        return Backend(loop, self.name, store, broker, inserter, marker, listener, dispatcher)

    async def _connect_parts(self) -> tuple[JobStore, MessageBroker, FinishWaiters]:
        redis_url, db_url = await self._resolve_urls()
        store = Store(db_url, table=self.table, lock_wait_timeout=self.sql_lock_wait_timeout)
        broker = Broker(redis_url, self.key_prefix, self.name)
        try:
            if self.init_db:
                await store.init_schema()
        except BaseException:
            await store.close()
            await broker.close()
            raise
        return store, broker, FinishListener(broker.redis, broker.keys.finished)

    async def connect(self) -> None:
        """Connect now (create the schema when ``init_db``) instead of at first use."""
        await self._backend()

    async def close(self) -> None:
        """Flush pending inserts and close the connections to SQL and Redis (the next use
        connects again)."""
        be, self._be = self._be, None
        if be is None:
            return
        await be.inserter.close()
        await be.marker.close()
        await be.listener.close()
        await be.broker.close()
        await be.store.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _flush_inserts(
        self,
        store: JobStore,
        dispatcher: Dispatcher,
        marker: DispatchMarker,
        jobs: Sequence[NewJob],
    ) -> list[str | BaseException]:
        now = self._clock()
        results = await store.insert_jobs(jobs, now)
        stored = [j for j, r in zip(jobs, results, strict=True) if r == j.id]
        if not stored:
            return results  # none stored (or each a duplicate of another job)
        try:
            epoch = await dispatcher.new_jobs(stored, now)
        except BrokerError as exc:
            # The jobs are durable; the sweeper puts them in Redis once it is back.
            log.warning("jobs stored but not dispatched (%s); the sweeper will", exc)
        else:
            assert epoch is not None
            marker.add_jobs(stored, now, epoch)
        return results
