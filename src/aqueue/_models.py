"""Plain data of the job model: job status, names checked before they reach SQL or
Redis, enqueue options, the job about to be inserted (:class:`NewJob`), the stored row
(:class:`JobRecord`) and the id ranges of a batch (:class:`IdRun`).

Everything here is immutable and free of I/O. Ids and the clock are in ``_ids``, the
Redis message format in ``_message``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from ._errors import ConfigurationError
from ._message import encode_message

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


class JobStatus(enum.StrEnum):
    """Where a job is in its life. ``done``, ``failed`` and ``cancelled`` are final;
    ``waiting``: enqueued with parents (``options(after=...)``) not all finished yet."""

    WAITING = "waiting"
    TODO = "todo"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Done, failed or cancelled: the job will not run again (unless repushed)."""
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


def validate_identifier(value: str, what: str) -> str:
    """Check a name that reaches SQL as an identifier (table names)."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ConfigurationError(
            f"invalid {what} {value!r}: use letters, digits and '_' (max 48, not starting "
            "with a digit)"
        )
    return value


def validate_name(value: str, what: str) -> str:
    """Check a queue name / key prefix / task name (reaches Redis keys and SQL values)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigurationError(
            f"invalid {what} {value!r}: use 1-128 of letters, digits and '_.:-'"
        )
    return value


def parent_ids(after: Any) -> tuple[str, ...]:
    """The ids of ``options(after=...)``: a job handle (anything with an ``id``), an id,
    or a list of them."""
    items = [after] if isinstance(after, str) or hasattr(after, "id") else list(after)
    ids = tuple(getattr(a, "id", a) for a in items)
    if not all(isinstance(i, str) and 1 <= len(i) <= 36 for i in ids):
        raise ConfigurationError(f"after takes jobs or job ids, got {after!r}")
    return tuple(dict.fromkeys(ids))


@dataclass(frozen=True, slots=True)
class Options:
    """Options of one job, kept apart from the handler's own arguments.

    Use them as ``await task.options(delay=5, priority=1).enqueue(*args, **kwargs)`` or
    ``await queue.options(job_id=...).enqueue("task_name", *args)``. A name that is not
    one of these fields raises :class:`ConfigurationError` naming the valid ones.
    """

    delay: float | None = None
    """Seconds to wait before the job may start."""
    run_at: float | None = None
    """Absolute start time as a UNIX timestamp (seconds, UTC); overrides ``delay``."""
    priority: int = 0
    """Higher runs first (stored for now; see docs/explanation/design.md)."""
    job_id: str | None = None
    """Explicit id: enqueueing twice with the same id stores and runs the job once."""
    unique_key: str | None = None
    """Deduplication key: while a job with this key exists, enqueue returns that job."""
    retries: int | None = None
    """Override the task's retries for this job."""
    timeout: float | None = None
    """Seconds each attempt of this job may run before it is cancelled and fails with
    ``TimeoutError`` (retried like any failure); overrides the task's ``timeout``."""
    expires: float | None = None
    """Seconds after the job's start time (now, ``delay`` or ``run_at``): a job not started
    by then is not run; it ends ``failed`` with ``JobExpiredError``."""
    tags: Sequence[str] | None = None
    """Labels to find the job by (``queue.jobs(tag=...)``): up to 16, each 1-128
    characters without ``,``; stored as a tuple."""
    after: Sequence[Any] = ()
    """Parents: jobs (``Job`` handles or ids) this job waits for. It stays ``waiting``
    until all are ``done``; stored as a tuple of ids. See docs/job-control.md#workflows."""
    after_failure: str = "cancel"
    """When a parent fails or is cancelled: ``"cancel"`` this job (with the reason) or
    ``"run"`` it anyway once every parent has finished."""
    connection: Any = None
    """The application's SQLAlchemy ``AsyncConnection`` or ``AsyncSession``: the job is
    written in its transaction, and sent to Redis once it commits (see
    docs/transactional-enqueue.md)."""

    def __post_init__(self) -> None:
        if self.delay is not None and (not isinstance(self.delay, int | float) or self.delay < 0):
            raise ConfigurationError(f"delay must be a number of seconds >= 0, got {self.delay!r}")
        if self.retries is not None and (not isinstance(self.retries, int) or self.retries < 0):
            raise ConfigurationError(f"retries must be an int >= 0, got {self.retries!r}")
        for name in ("timeout", "expires"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int | float) or v <= 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if not isinstance(self.priority, int):
            raise ConfigurationError(f"priority must be an int, got {self.priority!r}")
        if self.job_id is not None and (
            not isinstance(self.job_id, str) or not 1 <= len(self.job_id) <= 36
        ):
            raise ConfigurationError("job_id must be a string of 1-36 characters")
        if self.unique_key is not None and (
            not isinstance(self.unique_key, str) or not 1 <= len(self.unique_key) <= 160
        ):
            raise ConfigurationError("unique_key must be a string of 1-160 characters")
        if self.tags is not None:
            object.__setattr__(self, "tags", validate_tags(self.tags))
        if self.after:
            object.__setattr__(self, "after", parent_ids(self.after))
        if self.after_failure not in ("cancel", "run"):
            raise ConfigurationError(
                f"after_failure must be 'cancel' or 'run', got {self.after_failure!r}"
            )

    @classmethod
    def of(cls, **options: Any) -> Options:
        """The options named in ``options`` (``task.options(...)`` and
        ``queue.options(...)``): a misspelt name is a :class:`ConfigurationError` that
        names it and the valid ones, not the dataclass's bare ``TypeError``."""
        unknown = options.keys() - OPTION_NAMES
        if unknown:
            raise ConfigurationError(
                f"unknown job option(s) {', '.join(sorted(unknown))}: the options are "
                f"{', '.join(OPTION_NAMES_IN_ORDER)}"
            )
        return cls(**options)

    def run_options(self, now: int) -> dict[str, Any] | None:
        """The options a runner needs (timeout, expiry), as stored with the job."""
        o: dict[str, Any] = {}
        if self.timeout is not None:
            o["timeout"] = self.timeout
        if self.expires is not None:
            o["expires"] = self.start_time_us(now) + int(self.expires * 1_000_000)
        return o or None

    def start_time_us(self, now: int) -> int:
        """When the job is due (µs), from ``run_at`` or ``delay`` and ``now``."""
        if self.run_at is not None:
            return int(self.run_at * 1_000_000)
        if self.delay:
            return now + int(self.delay * 1_000_000)
        return now


MAX_TAGS = 16
MAX_TAG_LENGTH = 128
MAX_TAGS_SHOWN = 255
"""The ``tags`` column's width: the tags joined by ``,`` must fit, so that the column
lists every tag (the memory store and deletes read it)."""


def validate_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags as stored: a tuple, duplicates dropped (first kept); each a string of 1-128
    characters without ``,`` (the display column joins them with it), at most 16, and
    at most 255 characters joined."""
    if isinstance(tags, str) or not isinstance(tags, Sequence | set | frozenset):
        raise ConfigurationError(f"tags must be a list of strings, got {tags!r}")
    out = tuple(dict.fromkeys(tags))
    if len(out) > MAX_TAGS:
        raise ConfigurationError(f"at most {MAX_TAGS} tags per job, got {len(out)}")
    for tag in out:
        if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH or "," in tag:
            raise ConfigurationError(
                f"invalid tag {tag!r}: a tag is a string of 1-{MAX_TAG_LENGTH} characters "
                "without ','"
            )
    if len(",".join(out)) > MAX_TAGS_SHOWN:
        raise ConfigurationError(
            f"tags joined by ',' must fit in {MAX_TAGS_SHOWN} characters, got {len(','.join(out))}"
        )
    return out


OPTION_NAMES_IN_ORDER = tuple(f.name for f in fields(Options))
OPTION_NAMES = frozenset(OPTION_NAMES_IN_ORDER)

NO_OPTIONS = Options()
"""The options of a plain enqueue (frozen: one object for all)."""


class NewJob(NamedTuple):
    """A job about to be inserted (the row and its Redis message). A named tuple, not a
    frozen dataclass: ``enqueue_many`` makes a thousand at a time, and a frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost 1.7 µs each."""

    id: str
    queue: str
    task: str
    payload: str
    priority: int
    max_attempts: int
    run_at: int
    created_at: int
    unique_key: str | None = None
    # The fields above, in this order, are the row's parameters (``Store.insert_jobs``).
    explicit_id: bool = False
    tags: tuple[str, ...] = ()
    """Stored with the row (``tags`` column, joined by ``,``) and as rows of the tags
    table (``aqueue._store.tags``)."""

    def message(self, attempts: int = 0) -> str:
        return encode_message(
            self.id,
            self.task,
            self.payload,
            attempts,
            self.max_attempts,
            self.priority,
            0,
            self.run_at,
        )


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A row of the jobs table, as read for status and results."""

    id: str
    """The job's id (a UUIDv7 unless given with ``job_id``)."""
    queue: str
    """The queue's name."""
    task: str
    """The task's name."""
    payload: str
    """The arguments, as JSON."""
    status: JobStatus
    """Where the job is in its life."""
    priority: int
    """Higher runs first."""
    attempts: int
    """Runs started so far."""
    stalls: int
    """Times the job was reclaimed from a runner that stopped renewing its lease."""
    max_attempts: int
    """Runs allowed in all (retries + 1)."""
    run_at: int
    """When the job is due (µs since the epoch)."""
    lease_owner: str | None
    """The runner holding the job while it runs."""
    lease_token: str | None
    """The fencing token of the current run."""
    leased_until: int | None
    """When the current lease runs out (µs)."""
    result: str | None
    """The handler's return value, as JSON, once done."""
    error: str | None
    """The last failure (type, message, traceback), as JSON."""
    unique_key: str | None
    """The unique key while the job is live (released when it finishes)."""
    created_at: int
    """When it was enqueued (µs)."""
    updated_at: int
    """Its row's last change (µs)."""
    finished_at: int | None
    """When it reached a final status (µs)."""
    parents_left: int = 0
    """Parents of a ``waiting`` job not finished yet."""
    progress: float | None = None
    """The progress the handler last reported, if any."""
    progress_message: str | None = None
    """The message reported with it."""
    tags: str | None = None
    """The job's tags joined by ``,`` (display only)."""


@dataclass(frozen=True, slots=True)
class IdRun:
    """Ids ``first`` … ``last`` of one ``new_job_ids`` batch, all created at
    ``created_at``: every id of the range is this batch's (the other strings that sort
    inside it are not UUIDs, and only an explicit ``job_id`` created in the same
    microsecond could be one)."""

    first: str
    last: str
    created_at: int


def id_runs(jobs: Sequence[NewJob]) -> tuple[list[str], list[IdRun]]:
    """Split jobs (in submission order) into lone ids and runs of consecutive batch ids."""
    singles: list[str] = []
    runs: list[IdRun] = []
    i, n = 0, len(jobs)
    while i < n:
        j = jobs[i]
        k = i + 1
        if not j.explicit_id and len(j.id) == 36:
            prefix, count = j.id[:32], int(j.id[32:], 16)
            while k < n:
                nxt = jobs[k]
                if (
                    nxt.explicit_id
                    or nxt.created_at != j.created_at
                    or nxt.id[:32] != prefix
                    or nxt.id[32:] != f"{count + k - i:04x}"
                ):
                    break
                k += 1
        if k - i > 1:
            runs.append(IdRun(j.id, jobs[k - 1].id, j.created_at))
        else:
            singles.append(j.id)
        i = k
    return singles, runs
