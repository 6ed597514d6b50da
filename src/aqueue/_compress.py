"""Compressed payloads: a job's arguments over the queue's ``compress_over`` are stored
(in SQL and in its Redis messages) as a JSON object holding the base64 of the compressed
JSON, which splices into a message like any payload:

- ``{"z":"…"}``: zlib (level 1, from the standard library), the default;
- ``{"zstd":"…"}``: Zstandard (level 3), with ``Queue(compression="zstd")``: a third of
  zlib's CPU to compress, a quarter to inflate, and smaller. It needs the ``zstandard``
  package (``pip install 'aqueue[zstd]'``) or Python 3.14's ``compression.zstd``.

Either saves more in a row, the redo log and Redis than it costs; base64 keeps the
stored text a text, as older rows are."""

from __future__ import annotations

import binascii
import json
import threading
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

from ._errors import ConfigurationError, SerializationError

COMPRESSED_PREFIX = '{"z":'
"""How a zlib payload begins: ``{"z":"<base64 of the zlib stream>"}``. A payload as
written by ``encode_payload`` otherwise always has ``a`` (the arguments) first."""

ZSTD_PREFIX = '{"zstd":'
"""How a Zstandard payload begins: ``{"zstd":"<base64 of one zstd frame>"}``."""

CODECS = ("zlib", "zstd")

PROBE = 4096
"""Bytes compressed first, alone, to tell whether a large payload is worth compressing."""

ZSTD_LEVEL = 3

_ZLIB_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, zlib.error)


class _Zstd(NamedTuple):
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]
    error: type[Exception]


def _zstd() -> _Zstd | None:
    """Zstandard where it can be imported, else None."""
    try:  # Python 3.14's standard library
        from compression import zstd as std  # type: ignore[import-not-found,unused-ignore]

        def std_compress(data: bytes) -> bytes:
            return bytes(std.compress(data, level=ZSTD_LEVEL))

        def std_decompress(data: bytes) -> bytes:
            return bytes(std.decompress(data))

        return _Zstd(std_compress, std_decompress, std.ZstdError)
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    # A (de)compressor is not safe to share between threads: one each per thread.
    own = threading.local()

    def compress(data: bytes) -> bytes:
        try:
            packer = own.packer
        except AttributeError:
            packer = own.packer = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        return bytes(packer.compress(data))

    def decompress(data: bytes) -> bytes:
        try:
            unpacker = own.unpacker
        except AttributeError:
            unpacker = own.unpacker = zstandard.ZstdDecompressor()
        # a streaming object: a frame written without its content size reads too
        return bytes(unpacker.decompressobj().decompress(data))

    return _Zstd(compress, decompress, zstandard.ZstdError)


_ZSTD = _zstd()

ZSTD_MISSING = "Zstandard needs the zstandard package (pip install 'aqueue[zstd]') or Python 3.14"


def zstd_available() -> bool:
    return _ZSTD is not None


def check_codec(codec: object) -> str:
    """``codec`` if this process can compress with it; ``ConfigurationError`` if not."""
    if codec not in CODECS:
        raise ConfigurationError(f"compression must be one of {CODECS}, not {codec!r}")
    if codec == "zstd" and _ZSTD is None:
        raise ConfigurationError(f"compression='zstd': {ZSTD_MISSING}")
    return str(codec)


def _pack(data: bytes, codec: str) -> bytes:
    if codec == "zstd" and _ZSTD is not None:
        return _ZSTD.compress(data)
    return zlib.compress(data, 1)


def compress_payload(text: str, size: int, codec: str = "zlib") -> str:
    """``text`` (a payload of ``size`` UTF-8 bytes) compressed with ``codec``, as a JSON
    object that splices into a message like any payload; ``text`` itself when that
    would not save a tenth of it (random or already compressed data: the reader then
    pays nothing). A payload over twice ``PROBE`` is tried on its first ``PROBE`` bytes
    first: random data costs the producer a tenth of a compression, not a whole one for
    nothing."""
    data = text.encode()
    if len(data) > 2 * PROBE and len(_pack(data[:PROBE], codec)) * 4 > PROBE * 3 * 0.85:
        return text
    packed = binascii.b2a_base64(_pack(data, codec), newline=False).decode()
    prefix = ZSTD_PREFIX if codec == "zstd" else COMPRESSED_PREFIX
    if len(prefix) + len(packed) + 3 > size * 0.9:
        return text
    return f'{prefix}"{packed}"}}'


def expand_payload(data: Any) -> Any:
    """A decoded payload (``{"a": …, "k": …, "o": …}``) from what was stored: a
    compressed one is inflated and decoded, anything else returned as it is."""
    if type(data) is not dict or "a" in data:
        return data
    unpack: Callable[[bytes], bytes]
    if "z" in data:
        unpack, packed, errors = zlib.decompress, data["z"], _ZLIB_ERRORS
    elif "zstd" in data:
        if _ZSTD is None:
            raise SerializationError(f"a payload compressed with {ZSTD_MISSING}")
        unpack, packed, errors = _ZSTD.decompress, data["zstd"], (*_ZLIB_ERRORS, _ZSTD.error)
    else:
        return data
    try:
        return json.loads(unpack(binascii.a2b_base64(packed)))
    except errors as exc:  # binascii.Error is a ValueError, as JSON's errors are
        raise SerializationError(f"a compressed payload could not be read: {exc}") from exc
