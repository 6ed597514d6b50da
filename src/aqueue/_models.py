"""Plain data: job status, enqueue options, job records and the Redis message format.

Everything here is immutable and free of I/O.
"""

from __future__ import annotations

import enum
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._errors import ConfigurationError, SerializationError, UnsupportedMessageError

#: Version of the Redis message format; bump on incompatible changes. Runners accept
#: every version in ``SUPPORTED_MESSAGE_VERSIONS`` so old and new ones can share a deploy.
MESSAGE_VERSION = 1
SUPPORTED_MESSAGE_VERSIONS = frozenset({1})

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
# json.dumps of a str without its per-call setup: the C encoder json.dumps ends in.
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


class JobStatus(enum.StrEnum):
    """Where a job is in its life. ``done``, ``failed`` and ``cancelled`` are final."""

    TODO = "todo"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
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


def new_token() -> str:
    """A fresh lease (fencing) token."""
    return secrets.token_hex(8)


def new_runner_id() -> str:
    host = os.uname().nodename.split(".")[0][:20] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Options:
    """Options of one job, kept apart from the handler's own arguments.

    Use them as ``await task.options(delay=5, priority=1).enqueue(*args, **kwargs)`` or
    ``await queue.options(job_id=...).enqueue("task_name", *args)``.
    """

    delay: float | None = None
    """Seconds to wait before the job may start."""
    run_at: float | None = None
    """Absolute start time as a UNIX timestamp (seconds, UTC); overrides ``delay``."""
    priority: int = 0
    """Higher runs first (stored for now; see docs/design.md)."""
    job_id: str | None = None
    """Explicit id: enqueueing twice with the same id stores and runs the job once."""
    unique_key: str | None = None
    """Deduplication key: while a job with this key exists, enqueue returns that job."""
    retries: int | None = None
    """Override the task's retries for this job."""
    timeout: float | None = None
    """Run-time limit of each attempt of this job (overrides the task's)."""
    expires: float | None = None
    """Seconds after enqueue: a job not started by then is not run (it fails "expired")."""

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

    def run_options(self, now: int) -> dict[str, Any] | None:
        o: dict[str, Any] = {}
        if self.timeout is not None:
            o["timeout"] = self.timeout
        if self.expires is not None:
            o["expires"] = self.start_time_us(now) + int(self.expires * 1_000_000)
        return o or None

    def start_time_us(self, now: int) -> int:
        if self.run_at is not None:
            return int(self.run_at * 1_000_000)
        if self.delay:
            return now + int(self.delay * 1_000_000)
        return now


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

    def message(self, attempts: int = 0) -> str:
        return encode_message(
            self.id, self.task, self.payload, attempts, self.max_attempts, self.priority
        )


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A row of the jobs table, as read for status and results."""

    id: str
    queue: str
    task: str
    payload: str
    status: JobStatus
    priority: int
    attempts: int
    stalls: int
    max_attempts: int
    run_at: int
    lease_owner: str | None
    lease_token: str | None
    leased_until: int | None
    result: str | None
    error: str | None
    unique_key: str | None
    created_at: int
    updated_at: int
    finished_at: int | None


class Message(NamedTuple):
    """A decoded Redis message: everything a runner needs to run the job. A named tuple:
    one is made per job run, and a frozen dataclass's ``__init__`` cost 2 µs of it."""

    raw: bytes
    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    """Attempts already made before this delivery."""
    max_attempts: int
    version: int
    priority: int
    stalls: int
    options: dict[str, Any]
    """Per-job run options: ``timeout`` (s), ``expires`` (UNIX µs)."""

    @property
    def payload(self) -> str:
        """The payload's JSON text (arguments and options) as it stands in ``raw``: a
        retry's message reuses it instead of encoding the arguments again. Read from
        ``raw`` when asked (a retry), not when decoding (every run)."""
        return _payload_text(self.raw)

    def follow_up(self) -> bytes:
        """The message of the job's next attempt (a retry): same payload and priority."""
        return encode_message(
            self.id,
            self.task,
            self.payload,
            self.attempts + 1,
            self.max_attempts,
            self.priority,
            self.stalls,
        ).encode()


def encode_message(
    job_id: str,
    task: str,
    payload: str,
    attempts: int,
    max_attempts: int,
    priority: int = 0,
    stalls: int = 0,
) -> str:
    # The payload is already JSON; splice it in rather than decoding and re-encoding.
    # "s" (stalls) fences copies made before a reclaim: only the current copy can claim.
    r = f'"r":{priority},' if priority else ""
    s = f'"s":{stalls},' if stalls else ""
    return (
        f'{{"v":{MESSAGE_VERSION},"id":{_quote(job_id)},"t":{_quote(task)},{r}{s}'
        f'"n":{attempts},"m":{max_attempts},"p":{payload}}}'
    )


def _loads(raw: bytes) -> Any:
    """``json.loads`` for the compact UTF-8 JSON aqueue writes, through the C scanner
    directly (half the cost: no encoding detection, no whitespace matching). Anything
    else (whitespace around it, not JSON at all) goes to ``json.loads``, which decides."""
    try:
        text = raw.decode()
        value, end = _scan(text, 0)
    except (ValueError, StopIteration):  # UnicodeDecodeError and JSONDecodeError too
        return json.loads(raw)
    return value if end == len(text) else json.loads(raw)


def _payload_text(raw: bytes) -> str:
    """The payload's JSON as it stands in a message: ``encode_message`` writes it last
    (``,"p":<payload>}``), and no key or string before it can hold ``,"p":{`` (strings
    escape their quotes). A message written otherwise has its payload encoded again."""
    text = raw.decode()
    i = text.find(',"p":{')
    if i > 0 and text[-2:] == "}}" and text.startswith('{"v":'):
        return text[i + 5 : -1]
    return json.dumps(json.loads(raw)["p"], ensure_ascii=False, separators=(",", ":"))


def decode_message(raw: bytes) -> Message:
    """Decode a Redis message; raise :class:`SerializationError` when it is malformed."""
    try:
        data = _loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SerializationError(f"malformed message (not JSON): {raw[:80]!r}") from exc
    if not isinstance(data, dict):
        raise SerializationError(f"malformed message (not an object): {raw[:80]!r}")
    try:
        version = data["v"]
        if version not in SUPPORTED_MESSAGE_VERSIONS:
            raise UnsupportedMessageError(
                data.get("id") if isinstance(data.get("id"), str) else None,
                f"unsupported message version {version!r} (this aqueue reads "
                f"{sorted(SUPPORTED_MESSAGE_VERSIONS)})",
            )
        payload = data["p"]
        msg = Message(
            raw=raw,
            id=data["id"],
            task=data["t"],
            args=payload["a"],
            kwargs=payload["k"],
            options=payload.get("o") or {},
            attempts=int(data["n"]),
            max_attempts=int(data["m"]),
            version=version,
            priority=int(data.get("r", 0)),
            stalls=int(data.get("s", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SerializationError(f"malformed message ({exc!r}): {raw[:80]!r}") from exc
    if not isinstance(msg.id, str) or not isinstance(msg.task, str):
        raise SerializationError(f"malformed message (id/task): {raw[:80]!r}")
    if not isinstance(msg.args, list) or not isinstance(msg.kwargs, dict):
        raise SerializationError(f"malformed message (args/kwargs): {raw[:80]!r}")
    return msg


def message_job_id(raw: bytes) -> str | None:
    """Best-effort id of a (possibly malformed) message, to record its failure."""
    try:
        data = json.loads(raw)
        value = data.get("id") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None
    except (ValueError, UnicodeDecodeError):
        return None
