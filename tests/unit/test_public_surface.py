"""The public surface of aqueue, pinned: the names in ``aqueue.__all__`` and, for the
classes users hold (``Queue``, ``Task``, ``Job``, ``BoundQueue``, ``BoundTask``), every
public method's signature (with its overloads), every property, the public attributes a
new ``Queue`` has, and a digest of each docstring ``help()`` shows.

Moving code between private modules must leave this unchanged. A deliberate change of
the public API updates ``SNAPSHOT``: print the new one with
``python tests/unit/test_public_surface.py`` and review the difference.
"""

from __future__ import annotations

import hashlib
import inspect
import pprint
import typing
from typing import Any

import aqueue

CLASSES = ("Queue", "Task", "Job", "BoundQueue", "BoundTask")
# Dunder methods that are part of what users call (``async with queue``, ``task(...)``).
DUNDERS = ("__init__", "__call__", "__aenter__", "__aexit__")


def _digest(obj: Any) -> str:
    return hashlib.sha256((inspect.getdoc(obj) or "").encode()).hexdigest()[:16]


def _signatures(fn: Any) -> list[str]:
    """The signature, preceded by the overloads' (what ``help()`` and type checkers
    show of an overloaded method)."""
    overloads = [str(inspect.signature(o)) for o in typing.get_overloads(fn)]
    return [*overloads, str(inspect.signature(fn))]


def _member(cls: type, name: str) -> tuple[Any, ...]:
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, property):
        return ("property", _digest(raw))
    if isinstance(raw, staticmethod | classmethod):
        kind = type(raw).__name__
        fn = raw.__func__
        return (kind, *_signatures(fn), _digest(fn))
    if inspect.isfunction(raw):
        kind = "async method" if inspect.iscoroutinefunction(raw) else "method"
        return (kind, *_signatures(raw), _digest(raw))
    return ("attribute", type(raw).__name__)


def _class_surface(cls: type) -> dict[str, Any]:
    # object's own __init__ and friends say nothing about aqueue's surface.
    names = [
        n
        for n in sorted(dir(cls))
        if (not n.startswith("_") or n in DUNDERS)
        and inspect.getattr_static(cls, n) is not getattr(object, n, None)
    ]
    members = {n: _member(cls, n) for n in names}
    return {"doc": _digest(cls), "members": members}


def surface() -> dict[str, Any]:
    out: dict[str, Any] = {
        "__all__": sorted(aqueue.__all__),
        "kinds": {n: type(getattr(aqueue, n)).__name__ for n in sorted(aqueue.__all__)},
    }
    for name in CLASSES:
        out[name] = _class_surface(getattr(aqueue, name))
    queue = aqueue.Queue("surface", redis_url="redis://x", database_url="sqlite:///x")
    out["Queue instance attributes"] = sorted(n for n in vars(queue) if not n.startswith("_"))
    out["current_job"] = [str(inspect.signature(aqueue.current_job)), _digest(aqueue.current_job)]
    return out


SNAPSHOT: dict[str, Any] = {
    "__all__": [
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
    ],
    "kinds": {
        "AqueueError": "type",
        "BackendError": "type",
        "Backoff": "type",
        "BoundQueue": "type",
        "BoundTask": "type",
        "BrokerError": "type",
        "Chain": "type",
        "CommitError": "type",
        "ConfigurationError": "type",
        "EmbeddedServerError": "type",
        "EnqueueOutcomeUnknownError": "type",
        "ExecError": "type",
        "Group": "type",
        "Job": "type",
        "JobContext": "type",
        "JobError": "type",
        "JobExpiredError": "type",
        "JobFailedError": "type",
        "JobNotFoundError": "type",
        "JobQuery": "type",
        "JobRecord": "type",
        "JobStatus": "EnumType",
        "NoCurrentJobError": "type",
        "Options": "type",
        "PayloadTooLargeError": "type",
        "Queue": "type",
        "QueueFullError": "type",
        "RateLimited": "type",
        "ResultTimeoutError": "type",
        "Retry": "type",
        "Runner": "type",
        "RunnerConfig": "type",
        "RunnerCrashedError": "type",
        "SerializationError": "type",
        "Signature": "type",
        "StoreError": "type",
        "Task": "type",
        "UnknownTaskError": "type",
        "__version__": "str",
        "chain": "function",
        "chord": "function",
        "current_job": "function",
        "group": "function",
    },
    "Queue": {
        "doc": "aeb45c443a364170",
        "members": {
            "__aenter__": ("async method", "(self) -> 'Self'", "e3b0c44298fc1c14"),
            "__aexit__": ("async method", "(self, *exc: 'object') -> 'None'", "e3b0c44298fc1c14"),
            "__init__": (
                "method",
                "(self, name: 'str', *, redis_url: 'str | None' = None, "
                "database_url: 'str | None' = None, table: 'str' = "
                "'aqueue_jobs', key_prefix: 'str' = 'aq', init_db: 'bool' = "
                "True, max_payload_bytes: 'int' = 1048576, default_retries: "
                "'int' = 12, backoff: 'Backoff | None' = None, home: 'str | "
                "None' = None, strict_tasks: 'bool | None' = None, "
                "enqueue_batch: 'int | None' = None, sql_lock_wait_timeout: "
                "'int' = 5, max_size: 'int | None' = None, "
                "compress_over: 'int | None' = 4096, compression: 'str' = 'zlib') -> 'None'",
                "15432c8b93cc48ea",
            ),
            "after_job": ("method", "(self, fn: 'AfterHook') -> 'AfterHook'", "4e605248e32e87f1"),
            "allow_exec": (
                "method",
                "(self, programs: 'Iterable[str]', *, timeout: 'float | None' = 3600) -> 'None'",
                "14497b485dfe5aea",
            ),
            "backlog_age": ("async method", "(self) -> 'float | None'", "2d553815c0c3cb6f"),
            "before_job": ("method", "(self, fn: 'JobHook') -> 'JobHook'", "48e830ff9a0d6e95"),
            "cancel": (
                "async method",
                "(self, job_id: 'str', reason: 'str' = 'cancelled', *, "
                "connection: 'Any' = None) -> 'bool'",
                "d3a0ee903853910d",
            ),
            "cancel_jobs": (
                "async method",
                "(self, ids: 'Sequence[str] | None' = None, *, query: "
                "'JobQuery | None' = None, limit: 'int | None' = None, "
                "reason: 'str' = 'cancelled') -> 'int'",
                "5cffa14461400a4a",
            ),
            "close": ("async method", "(self) -> 'None'", "5b2ef0bc740149b9"),
            "commit": (
                "async method",
                "(self, job_id: 'str', token: 'str', status: 'str | JobStatus', "
                "*, result: 'Any' = None, error: 'str | None' = None, delay: "
                "'float | None' = None) -> 'None'",
                "8843bd6cdfcf5be1",
            ),
            "connect": ("async method", "(self) -> 'None'", "fea59b7b056579f2"),
            "counts": ("async method", "(self) -> 'dict[JobStatus, int]'", "c253d3128042ae4f"),
            "cron": (
                "method",
                "(self, expr: 'str', *, name: 'str | None' = None, missed: "
                "'MissedPolicy' = 'latest', catch_up: 'float' = 3600.0, retries: "
                "'int | None' = None, timeout: 'float | None' = None) -> "
                "'Callable[[Callable[[], Awaitable[R]]], Task[[], R]]'",
                "dbb71350d95f9d98",
            ),
            "delete_jobs": (
                "async method",
                "(self, ids: 'Sequence[str] | None' = None, *, query: "
                "'JobQuery | None' = None, limit: 'int | None' = None) -> "
                "'int'",
                "78bdfdbb0865a158",
            ),
            "enqueue": (
                "async method",
                "(self, task: 'str | Task[Any, Any]', /, *args: 'Any', **kwargs: 'Any') -> 'Job'",
                "73603c9a2bc21e90",
            ),
            "enqueue_many": (
                "async method",
                "(self, calls: 'Iterable[tuple[str | Task[Any, Any], "
                "Sequence[Any], dict[str, Any]]]', *, options: 'Options | "
                "None' = None) -> 'list[Job]'",
                "1e50ef8a42073282",
            ),
            "enqueue_many_sync": (
                "method",
                "(self, calls: 'Iterable[tuple[str | Task[Any, Any], "
                "Sequence[Any], dict[str, Any]]]', *, options: "
                "'Options | None' = None) -> 'list[Job]'",
                "c15ff0592bf08f2c",
            ),
            "enqueue_sync": (
                "method",
                "(self, task: 'str | Task[Any, Any]', /, *args: 'Any', **kwargs: 'Any') -> 'Job'",
                "550900032ae53d34",
            ),
            "exec": (
                "async method",
                "(self, argv: 'Sequence[str]', *, timeout: 'float | None' = None, "
                "cwd: 'str | None' = None, env: 'dict[str, str] | None' = None, "
                "stdin: 'str | None' = None, options: 'Options | None' = None) -> "
                "'Job'",
                "9c82be77fcb73d80",
            ),
            "find_jobs": (
                "async method",
                "(self, query: 'JobQuery | None' = None, limit: 'int' = 50) -> 'list[JobRecord]'",
                "bcbd1ed88d8f44d7",
            ),
            "job": ("method", "(self, job_id: 'str') -> 'Job'", "5199e6677b67d823"),
            "job_ids": (
                "async method",
                "(self, status: 'str | JobStatus', limit: 'int' = 1000) -> 'list[str]'",
                "a8a30c201a2a596b",
            ),
            "job_query": (
                "method",
                "(self, *, status: 'str | JobStatus | Iterable[str | "
                "JobStatus] | None' = None, task: 'str | None' = None, "
                "job_id: 'str | None' = None, text: 'str | None' = None, "
                "created_from: 'Moment | None' = None, created_to: 'Moment | "
                "None' = None, before_id: 'str | None' = None, tag: 'str | "
                "None' = None) -> 'JobQuery'",
                "86c5e61c21a65995",
            ),
            "jobs": (
                "async method",
                "(self, *, tag: 'str | None' = None, status: 'str | JobStatus | "
                "Iterable[str | JobStatus] | None' = None, task: 'str | None' = "
                "None, limit: 'int' = 50) -> 'list[JobRecord]'",
                "71f46c91502c0c61",
            ),
            "middleware": (
                "method",
                "(self, fn: 'Middleware') -> 'Middleware'",
                "7a76db036040e874",
            ),
            "on_shutdown": ("method", "(self, fn: 'Hook') -> 'Hook'", "9f6e65215c731de2"),
            "on_startup": ("method", "(self, fn: 'Hook') -> 'Hook'", "88ce5a3bb7557e81"),
            "options": ("method", "(self, **options: 'Any') -> 'BoundQueue'", "12dfdfee9405948e"),
            "periodic": (
                "method",
                "(self, *, every: 'float', name: 'str | None' = None, missed: "
                "'MissedPolicy' = 'latest', catch_up: 'float' = 3600.0, "
                "retries: 'int | None' = None, timeout: 'float | None' = None) "
                "-> 'Callable[[Callable[[], Awaitable[R]]], Task[[], R]]'",
                "e594a4a2c38ceb69",
            ),
            "purge": ("async method", "(self) -> 'int'", "2ff388d482c46aaa"),
            "purge_finished": (
                "async method",
                "(self, older_than: 'float') -> 'int'",
                "e79cbba9c16c93ad",
            ),
            "repush": (
                "async method",
                "(self, job_id: 'str', *, force: 'bool' = False) -> 'Job'",
                "d95e359f7687fe3b",
            ),
            "retry_jobs": (
                "async method",
                "(self, ids: 'Sequence[str] | None' = None, *, query: "
                "'JobQuery | None' = None, limit: 'int | None' = None) -> "
                "'int'",
                "642ddd2dde7b4a05",
            ),
            "run": (
                "async method",
                "(self, config: 'RunnerConfig | None' = None) -> 'None'",
                "653aea3f226608fa",
            ),
            "runner_stats": (
                "async method",
                "(self) -> 'dict[str, dict[str, int]]'",
                "8cab61365c14755d",
            ),
            "search_jobs": (
                "async method",
                "(self, query: 'JobQuery', limit: 'int' = 50, *, scan: "
                "'int' = 50000) -> 'tuple[list[JobRecord], str | None]'",
                "cce16e0c6fa7584e",
            ),
            "status_counts": (
                "async method",
                "(self, cap: 'int' = 100000) -> 'dict[JobStatus, tuple[int, bool]]'",
                "3eaf859f0330be9d",
            ),
            "task": (
                "method",
                "(self, fn: 'Callable[P, Awaitable[R]]', /) -> 'Task[P, R]'",
                "(self, fn: 'Callable[P, R]', /) -> 'Task[P, R]'",
                "(self, *, name: 'str | None' = None, retries: 'int | None' = "
                "None, timeout: 'float | None' = None, backoff: 'Backoff | None' = "
                "None, no_retry: 'Iterable[type[BaseException]]' = (), "
                "auto_commit: 'bool' = True, concurrency: 'int | None' = None, "
                "rate_limit: 'str | None' = None, rate_burst: 'int' = 1, rate_key: "
                "'RateKey | None' = None) -> 'TaskDecorator'",
                "(self, fn: 'Callable[P, Awaitable[R]] | None' = None, /, *, name: "
                "'str | None' = None, retries: 'int | None' = None, timeout: "
                "'float | None' = None, backoff: 'Backoff | None' = None, "
                "no_retry: 'Iterable[type[BaseException]]' = (), auto_commit: "
                "'bool' = True, concurrency: 'int | None' = None, rate_limit: 'str "
                "| None' = None, rate_burst: 'int' = 1, rate_key: 'RateKey | None' "
                "= None) -> 'Task[P, R] | TaskDecorator'",
                "1b236153e07f1c48",
            ),
        },
    },
    "Task": {
        "doc": "049362a62542befc",
        "members": {
            "__call__": (
                "method",
                "(self, *args: 'P.args', **kwargs: 'P.kwargs') -> 'Awaitable[R]'",
                "42938cd9f57edd4e",
            ),
            "__init__": (
                "method",
                "(self, queue: 'QueueHandle', fn: 'Callable[P, Awaitable[R]]', "
                "config: 'TaskConfig') -> 'None'",
                "15432c8b93cc48ea",
            ),
            "enqueue": (
                "async method",
                "(self, *args: 'P.args', **kwargs: 'P.kwargs') -> 'Job'",
                "d10978b74aa1a233",
            ),
            "enqueue_sync": (
                "method",
                "(self, *args: 'P.args', **kwargs: 'P.kwargs') -> 'Job'",
                "df8cea289293b971",
            ),
            "options": (
                "method",
                "(self, **options: 'Any') -> 'BoundTask[P, R]'",
                "f38d23c74e8de718",
            ),
            "s": (
                "method",
                "(self, *args: 'Any', **kwargs: 'Any') -> 'Signature'",
                "c10af34c906d9d2f",
            ),
        },
    },
    "Job": {
        "doc": "5545c8acfd1df9ab",
        "members": {
            "__init__": (
                "method",
                "(self, queue: 'JobOwner', job_id: 'str') -> 'None'",
                "15432c8b93cc48ea",
            ),
            "cancel": (
                "async method",
                "(self, reason: 'str' = 'cancelled', *, connection: 'Any' = None) -> 'bool'",
                "baf1c16620e286d9",
            ),
            "id": ("attribute", "member_descriptor"),
            "info": (
                "async method",
                "(self, *, connection: 'Any' = None) -> 'JobRecord'",
                "41671ee3c689d98f",
            ),
            "info_sync": ("method", "(self) -> 'JobRecord'", "43d39c5b9ba08108"),
            "queue": ("attribute", "member_descriptor"),
            "result": (
                "async method",
                "(self, timeout: 'float | None' = None, *, poll: 'float' = 1.0) -> 'Any'",
                "4a9eb59de328b0bc",
            ),
            "result_sync": (
                "method",
                "(self, timeout: 'float | None' = None, *, poll: 'float' = 1.0) -> 'Any'",
                "6787f4ebf91a675e",
            ),
            "status": (
                "async method",
                "(self, *, connection: 'Any' = None) -> 'JobStatus'",
                "f666a1900dc15cb7",
            ),
        },
    },
    "BoundQueue": {
        "doc": "ed6e5d7faad35270",
        "members": {
            "__init__": (
                "method",
                "(self, queue: 'QueueClient', options: 'Options') -> 'None'",
                "15432c8b93cc48ea",
            ),
            "enqueue": (
                "async method",
                "(self, task: 'str | Task[Any, Any]', /, *args: 'Any', **kwargs: 'Any') -> 'Job'",
                "d24d4566a46ad093",
            ),
            "enqueue_many": (
                "async method",
                "(self, calls: 'Iterable[tuple[str | Task[Any, Any], "
                "Sequence[Any], dict[str, Any]]]') -> 'list[Job]'",
                "1c206c37a904c133",
            ),
            "enqueue_many_sync": (
                "method",
                "(self, calls: 'Iterable[tuple[str | Task[Any, "
                "Any], Sequence[Any], dict[str, Any]]]') -> "
                "'list[Job]'",
                "c3cc604068d90bde",
            ),
            "enqueue_sync": (
                "method",
                "(self, task: 'str | Task[Any, Any]', /, *args: 'Any', **kwargs: 'Any') -> 'Job'",
                "effb84637a930538",
            ),
        },
    },
    "BoundTask": {
        "doc": "37d739e60a12e06b",
        "members": {
            "__init__": (
                "method",
                "(self, task: 'Task[P, R]', options: 'Options') -> 'None'",
                "15432c8b93cc48ea",
            ),
            "enqueue": (
                "async method",
                "(self, *args: 'P.args', **kwargs: 'P.kwargs') -> 'Job'",
                "ce31b197a76845d1",
            ),
            "enqueue_sync": (
                "method",
                "(self, *args: 'P.args', **kwargs: 'P.kwargs') -> 'Job'",
                "50fc5eb37f4a3b40",
            ),
            "s": (
                "method",
                "(self, *args: 'Any', **kwargs: 'Any') -> 'Signature'",
                "9b32bdfa86e4ea20",
            ),
        },
    },
    "Queue instance attributes": [
        "after_hooks",
        "backoff",
        "before_hooks",
        "compress_over",
        "compression",
        "default_retries",
        "enqueue_batch",
        "init_db",
        "key_prefix",
        "max_payload_bytes",
        "max_size",
        "middlewares",
        "name",
        "schedules",
        "shutdown_hooks",
        "sql_lock_wait_timeout",
        "startup_hooks",
        "strict_tasks",
        "table",
        "tasks",
    ],
    "current_job": ["() -> 'JobContext'", "4382bda32cb8ad01"],
}


def test_public_surface_unchanged() -> None:
    actual = surface()
    assert actual.keys() == SNAPSHOT.keys()
    for key, expected in SNAPSHOT.items():
        assert actual[key] == expected, key


if __name__ == "__main__":
    pprint.pprint(surface(), width=100, sort_dicts=False)
