"""The settings and state of a queue client: what ``Queue(...)`` takes and checks, the
registries (tasks, schedules, hooks, middleware) and the slot of its backend.

:class:`QueueBase` is the bottom of the client's mixins (see ``aqueue._queue``): each
part above it adds methods over this one object's attributes, so the runner, the task
and job handles and ``aqueue.testing`` see one queue, as before.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from .._backend import Backend
from .._broker.base import FinishWaiters, MessageBroker
from .._compress import check_codec
from .._cron import Schedule
from .._decisions import Backoff
from .._errors import ConfigurationError
from .._ids import now_us
from .._models import validate_identifier, validate_name
from .._registry import AfterHook, Hook, JobHook, Middleware
from .._store.base import JobStore
from .._task import Task

# What ``QueueClient._parts_factory`` returns: the store, broker and finish listener a
# queue runs on.
PartsFactory = Callable[[], Awaitable[tuple[JobStore, MessageBroker, FinishWaiters]]]


class QueueBase:
    """A queue's configuration, registries and backend slot (no behaviour of its own)."""

    def __init__(
        self,
        name: str,
        *,
        redis_url: str | None = None,
        database_url: str | None = None,
        table: str = "aqueue_jobs",
        key_prefix: str = "aq",
        init_db: bool = True,
        max_payload_bytes: int = 1024 * 1024,
        default_retries: int = 12,
        backoff: Backoff | None = None,
        home: str | None = None,
        strict_tasks: bool | None = None,
        enqueue_batch: int | None = None,
        sql_lock_wait_timeout: int = 5,
        max_size: int | None = None,
        compress_over: int | None = 4096,
        compression: str = "zlib",
    ) -> None:
        self.name = validate_name(name, "queue name")
        self.key_prefix = validate_name(key_prefix, "key prefix")
        self.table = validate_identifier(table, "table name")
        self._redis_url = redis_url or os.environ.get("AQUEUE_REDIS_URL") or None
        self._database_url = database_url or os.environ.get("AQUEUE_DATABASE_URL") or None
        self._home = home
        self.init_db = init_db
        if not isinstance(max_payload_bytes, int) or max_payload_bytes <= 0:
            raise ConfigurationError("max_payload_bytes must be a positive int")
        self.max_payload_bytes = max_payload_bytes
        self.default_retries = default_retries
        self.backoff = backoff or Backoff()
        self.strict_tasks = strict_tasks
        # Rows per INSERT: 9 parameters each, under SQLite's 32,766. None: 500 on MySQL,
        # where a larger batch (an enqueue_many call, a burst of producers) goes as several
        # statements at once on up to four connections (2 x 500 rows stored 62-67k rows/s
        # here, 1 x 1,000 50k); 1,000 on SQLite, which writes one statement at a time.
        if enqueue_batch is not None and (
            not isinstance(enqueue_batch, int) or not 1 <= enqueue_batch <= 3000
        ):
            raise ConfigurationError("enqueue_batch must be an int from 1 to 3000 (or None)")
        self.enqueue_batch = enqueue_batch
        self.sql_lock_wait_timeout = sql_lock_wait_timeout
        if max_size is not None and (not isinstance(max_size, int) or max_size < 1):
            raise ConfigurationError("max_size must be an int >= 1 (or None)")
        self.max_size = max_size
        # Arguments whose JSON is over this many bytes are stored compressed (zlib or
        # Zstandard, when that saves a tenth): a 10 KB document is written once to the
        # row, once to the redo log and once to Redis, and costs less compressed than
        # copied.
        if compress_over is not None and (
            not isinstance(compress_over, int)
            or isinstance(compress_over, bool)
            or compress_over < 0
        ):
            raise ConfigurationError("compress_over must be an int >= 0 (bytes) or None")
        self.compress_over = compress_over
        self.compression = check_codec(compression)
        # max_size: (when counted, jobs waiting then plus those this producer added since)
        self._size_seen: tuple[float, int] = (0.0, 0)
        self._exec_allowed: frozenset[str] = frozenset()
        self.schedules: dict[str, Schedule] = {}
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.before_hooks: list[JobHook] = []
        self.after_hooks: list[AfterHook] = []
        self.middlewares: list[Middleware] = []
        self._be: Backend | None = None
        # A private injection point (used by ``aqueue.testing``): when set, ``_connect``
        # runs the queue on the parts this async factory returns (store, broker, finish
        # listener) instead of building them from the URLs.
        self._parts_factory: PartsFactory | None = None
        # The wall clock (UNIX µs) of the producer side's writes: enqueue and run_at
        # times, repush, cancel, purge, dispatch marks. ``aqueue.testing`` passes its
        # clock here, as it passes it to the runner.
        self._clock: Callable[[], int] = now_us
        self._be_lock: asyncio.Lock | None = None
        self._be_lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} tasks={len(self.tasks)}>"
