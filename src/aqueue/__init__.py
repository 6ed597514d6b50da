"""aqueue: an asyncio-native distributed task queue, durable in SQL, fast through Redis.

The public surface is re-exported here; everything else lives in private modules.
"""

from ._app import Queue
from ._context import JobContext, current_job
from ._decisions import Backoff
from ._errors import (
    AqueueError,
    BackendError,
    BrokerError,
    CommitError,
    ConfigurationError,
    EmbeddedServerError,
    EnqueueOutcomeUnknownError,
    ExecError,
    JobError,
    JobExpiredError,
    JobFailedError,
    JobNotFoundError,
    NoCurrentJobError,
    PayloadTooLargeError,
    QueueFullError,
    RateLimited,
    ResultTimeoutError,
    Retry,
    RunnerCrashedError,
    SerializationError,
    StoreError,
    UnknownTaskError,
)
from ._job import Job
from ._models import JobRecord, JobStatus, Options
from ._queue.client import BoundQueue
from ._runner.config import RunnerConfig
from ._runner.runner import Runner
from ._store.values import JobQuery
from ._task import BoundTask, Task
from ._workflow import Chain, Group, Signature, chain, chord, group

__version__ = "0.1.0"

__all__ = [
    "AqueueError",
    "BackendError",
    "Backoff",
    "BoundQueue",
    "BoundTask",
    "BrokerError",
    "Chain",
    "CommitError",
    "ConfigurationError",
    "EmbeddedServerError",
    "EnqueueOutcomeUnknownError",
    "ExecError",
    "Group",
    "Job",
    "JobContext",
    "JobError",
    "JobExpiredError",
    "JobFailedError",
    "JobNotFoundError",
    "JobQuery",
    "JobRecord",
    "JobStatus",
    "NoCurrentJobError",
    "Options",
    "PayloadTooLargeError",
    "Queue",
    "QueueFullError",
    "RateLimited",
    "ResultTimeoutError",
    "Retry",
    "Runner",
    "RunnerConfig",
    "RunnerCrashedError",
    "SerializationError",
    "Signature",
    "StoreError",
    "Task",
    "UnknownTaskError",
    "__version__",
    "chain",
    "chord",
    "current_job",
    "group",
]
