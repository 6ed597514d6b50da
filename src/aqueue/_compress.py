"""Compressed payloads: a job's arguments over the queue's ``compress_over`` are stored
(in SQL and in its Redis messages) as ``{"z":"<base64 of the zlib stream>"}``, a JSON
object that splices into a message like any payload. zlib (level 1, from the standard
library) is fast enough that the bytes it saves in a row, the redo log and Redis cost
less than the compression; base64 keeps the stored text a text, as older rows are."""

from __future__ import annotations

import binascii
import json
import zlib
from typing import Any

from ._errors import SerializationError

COMPRESSED_PREFIX = '{"z":'
"""How a compressed payload begins: ``{"z":"<base64 of the zlib stream>"}``. A payload
as written by ``encode_payload`` otherwise always has ``a`` (the arguments) first."""


PROBE = 4096
"""Bytes compressed first, alone, to tell whether a large payload is worth compressing."""


def compress_payload(text: str, size: int) -> str:
    """``text`` (a payload of ``size`` UTF-8 bytes) compressed, as a JSON object that
    splices into a message like any payload; ``text`` itself when that would not save a
    tenth of it (random or already compressed data: the reader then pays nothing). A
    payload over twice ``PROBE`` is tried on its first ``PROBE`` bytes first: random data
    costs the producer a tenth of a compression, not a whole one for nothing."""
    data = text.encode()
    if len(data) > 2 * PROBE and len(zlib.compress(data[:PROBE], 1)) * 4 > PROBE * 3 * 0.85:
        return text
    packed = binascii.b2a_base64(zlib.compress(data, 1), newline=False).decode()
    if len(packed) + 8 > size * 0.9:
        return text
    return f'{COMPRESSED_PREFIX}"{packed}"}}'


def expand_payload(data: Any) -> Any:
    """A decoded payload (``{"a": …, "k": …, "o": …}``) from what was stored: a
    compressed one is inflated and decoded, anything else returned as it is."""
    if type(data) is not dict or "z" not in data or "a" in data:
        return data
    try:
        return json.loads(zlib.decompress(binascii.a2b_base64(data["z"])))
    except (ValueError, TypeError, zlib.error) as exc:  # binascii.Error is a ValueError
        raise SerializationError(f"a compressed payload could not be read: {exc}") from exc
