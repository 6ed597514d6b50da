"""The backend of one queue in one event loop: the SQL store, the Redis broker and the
helpers around them, shared by the producer side (``_queue``) and the runner
(``_runner``), which both sit above this module. The messages of new jobs, stored rows and
follow-ups go through its ``dispatcher`` (``_dispatch``), the one place that decides to
which Redis list or set a message goes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ._broker.base import FinishWaiters, MessageBroker
from ._dispatch import Dispatcher
from ._models import NewJob
from ._store.base import JobStore
from ._store.batcher import Batcher
from ._store.marker import DispatchMarker


@dataclass(slots=True)
class Backend:
    loop: asyncio.AbstractEventLoop
    queue_name: str
    store: JobStore
    broker: MessageBroker
    inserter: Batcher[NewJob, str]
    marker: DispatchMarker
    listener: FinishWaiters
    dispatcher: Dispatcher
