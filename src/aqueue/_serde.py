"""JSON (never pickle) encoding of arguments, results and errors."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ._compress import compress_payload, expand_payload
from ._errors import PayloadTooLargeError, SerializationError

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_encode_str = json.encoder.encode_basestring


def _unsupported(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# ``JSONEncoder.encode`` builds a C encoder on every call (most of its cost for a small
# value); this is the same encoder, built once. It keeps no record of the containers it is
# in (a shared one would be left dirty by a failed call), so a cycle ends in RecursionError.
_c_make: Any = getattr(json.encoder, "c_make_encoder", None)
_c_encode: Callable[[Any, int], Sequence[str]] | None = (
    None
    if _c_make is None
    else _c_make(None, _unsupported, _encode_str, None, ":", ",", False, False, False)
)


def dumps(value: Any, what: str) -> str:
    # The usual results, without building an encoder per call (as JSONEncoder.encode does)
    if value is None:
        return "null"
    if type(value) is int:  # not bool (a subclass): "true", not "1"
        return int.__repr__(value)
    if type(value) is str:
        return _encode_str(value)
    try:
        if _c_encode is not None:
            return "".join(_c_encode(value, 0))
        return _encoder.encode(value)
    except RecursionError as exc:
        raise SerializationError(
            f"{what} cannot be encoded as JSON: it contains itself or is nested too deeply"
        ) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"{what} cannot be encoded as JSON: {exc}") from exc


def encode_payload(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    limit: int,
    options: dict[str, Any] | None = None,
    compress_over: int | None = None,
    compression: str = "zlib",
) -> str:
    """The job's arguments (and its per-job run options, ``o``) as stored in SQL and
    spliced into the Redis message. Over ``compress_over`` bytes (None: never) it is
    stored compressed with ``compression`` when that saves at least a tenth (see
    :func:`compress_payload`);
    ``limit`` applies to the arguments as given, before any compression."""
    data: dict[str, Any] = {"a": args, "k": kwargs}  # a tuple encodes as an array
    if options:
        data["o"] = options
    text = dumps(data, "the job's arguments")
    if text.isascii():  # known without a scan: one byte a character
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate: no database could store it
            raise SerializationError(f"the job's arguments are not valid Unicode: {exc}") from exc
    if size > limit:
        raise PayloadTooLargeError(
            f"the job's arguments encode to {size} bytes, over max_payload_bytes={limit}"
        )
    if compress_over is not None and size > compress_over:
        return compress_payload(text, size, compression)
    return text


def decode_payload(text: str) -> Any:
    """A stored payload's text as data (``{"a": …, "k": …, "o": …}``), inflated if it
    was stored compressed. Raises ``ValueError`` when it is not JSON and
    ``SerializationError`` when a compressed one is corrupt."""
    return expand_payload(json.loads(text))


def encode_error(exc: BaseException) -> str:
    """The stored form of a failure. Never raises: the exception is the handler's, and
    its ``__str__`` (or anything the traceback module reads) may itself raise; a failure
    that cannot be recorded would leave its job ``running``."""
    kind = _safe_text(lambda: type(exc).__qualname__, "<unknown type>")
    message = _safe_text(lambda: str(exc), "<exception str() failed>")
    tb = _safe_text(
        lambda: "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        f"{kind}: {message}\n<traceback could not be rendered>\n",
    )
    return dumps({"type": kind, "message": message, "traceback": tb[-8000:]}, "error")


def _safe_text(render: Callable[[], Any], placeholder: str) -> str:
    """``render()`` as a plain ``str`` that UTF-8 (hence SQL) can store: a lone surrogate
    becomes an escape; any failure, the placeholder (as the traceback module does)."""
    try:
        text = render()
        if not isinstance(text, str):
            return placeholder
        text = str.__str__(text)  # a str subclass's methods are the handler's code
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    except Exception:
        return placeholder


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
