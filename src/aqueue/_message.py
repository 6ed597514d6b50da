"""The Redis message format: a job as a runner receives it (:class:`Message`), its
encoding (``encode_message``, which splices the payload's JSON in as it is) and its
decoding (``decode_message``, through the C JSON scanner).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from ._compress import (
    COMPRESSED_PREFIX,
    ZSTD_MISSING,
    ZSTD_PREFIX,
    expand_payload,
    zstd_available,
)
from ._errors import SerializationError, UnsupportedMessageError

#: Version of the Redis message format; bump on incompatible changes. Runners accept
#: every version in ``SUPPORTED_MESSAGE_VERSIONS`` so old and new ones can share a deploy.
#: A message whose payload is compressed is version 2 (zlib) or 3 (Zstandard): a runner
#: that cannot read it leaves it for one that can, instead of failing the job's
#: arguments. Version 3 is read where Zstandard can be imported (``aqueue[zstd]``).
MESSAGE_VERSION = 1
COMPRESSED_MESSAGE_VERSION = 2
ZSTD_MESSAGE_VERSION = 3
SUPPORTED_MESSAGE_VERSIONS = frozenset({1, 2, 3} if zstd_available() else {1, 2})

# json.dumps of a str without its per-call setup: the C encoder json.dumps ends in.
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


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
    """Per-job run options: ``timeout`` (s), ``expires`` (UNIX µs), ``tc`` (the producer's
    trace context, see ``_observe``)."""
    due: int = 0
    """When the job became due (UNIX ms: enqueued, or its ``run_at``), for the queue wait
    metric; 0 in a message written without it (optional: older writers leave it out)."""

    @property
    def payload(self) -> str:
        """The payload's JSON text (arguments and options) as it stands in ``raw``: a
        retry's message reuses it instead of encoding the arguments again. Read from
        ``raw`` when asked (a retry), not when decoding (every run)."""
        return _payload_text(self.raw)

    def follow_up(self, run_at: int | None = None) -> bytes:
        """The message of the job's next attempt (a retry, due at ``run_at`` µs): same
        payload and priority."""
        return encode_message(
            self.id,
            self.task,
            self.payload,
            self.attempts + 1,
            self.max_attempts,
            self.priority,
            self.stalls,
            run_at,
        ).encode()


def encode_message(
    job_id: str,
    task: str,
    payload: str,
    attempts: int,
    max_attempts: int,
    priority: int = 0,
    stalls: int = 0,
    due_us: int | None = None,
) -> str:
    # The payload is already JSON; splice it in rather than decoding and re-encoding.
    # "s" (stalls) fences copies made before a reclaim: only the current copy can claim.
    # "d" (due, ms) is optional: readers that do not know it ignore it.
    r = f'"r":{priority},' if priority else ""
    s = f'"s":{stalls},' if stalls else ""
    d = f'"d":{due_us // 1000},' if due_us else ""
    v = MESSAGE_VERSION
    if payload.startswith(COMPRESSED_PREFIX):
        v = COMPRESSED_MESSAGE_VERSION
    elif payload.startswith(ZSTD_PREFIX):
        v = ZSTD_MESSAGE_VERSION
    return (
        f'{{"v":{v},"id":{_quote(job_id)},"t":{_quote(task)},{r}{s}{d}'
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
            why = f" ({ZSTD_MISSING})" if version == ZSTD_MESSAGE_VERSION else ""
            raise UnsupportedMessageError(
                data.get("id") if isinstance(data.get("id"), str) else None,
                f"unsupported message version {version!r} (this aqueue reads "
                f"{sorted(SUPPORTED_MESSAGE_VERSIONS)}){why}",
            )
        payload = data["p"]
        if version != MESSAGE_VERSION:
            payload = expand_payload(payload)
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
            due=int(data.get("d", 0)),
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
