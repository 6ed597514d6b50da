"""JSON (never pickle) encoding of arguments, results and errors."""

from __future__ import annotations

import json
import traceback
from typing import Any

from ._errors import PayloadTooLargeError, SerializationError

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any, what: str) -> str:
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"{what} cannot be encoded as JSON: {exc}") from exc


def encode_payload(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    limit: int,
    options: dict[str, Any] | None = None,
) -> str:
    """The job's arguments (and its per-job run options, ``o``) as stored in SQL and
    spliced into the Redis message."""
    data: dict[str, Any] = {"a": list(args), "k": kwargs}
    if options:
        data["o"] = options
    text = dumps(data, "the job's arguments")
    size = len(text.encode("utf-8"))
    if size > limit:
        raise PayloadTooLargeError(
            f"the job's arguments encode to {size} bytes, over max_payload_bytes={limit}"
        )
    return text


def encode_error(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return dumps(
        {"type": type(exc).__qualname__, "message": str(exc), "traceback": tb[-8000:]},
        "error",
    )


def encode_reason(type_name: str, message: str) -> str:
    return dumps({"type": type_name, "message": message, "traceback": ""}, "error")


def decode_error(text: str | None) -> tuple[str, str, str]:
    if not text:
        return "Error", "", ""
    try:
        data = json.loads(text)
        return (
            str(data.get("type", "Error")),
            str(data.get("message", "")),
            str(data.get("traceback", "")),
        )
    except (ValueError, AttributeError):
        return "Error", text, ""
