"""Compressed payloads: stored and sent compressed over the queue's ``compress_over``
when that saves a tenth, read back as the arguments given; plain ones read as before."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest

from aqueue import ConfigurationError, PayloadTooLargeError, Queue, SerializationError
from aqueue._compress import COMPRESSED_PREFIX, ZSTD_PREFIX
from aqueue._message import decode_message, encode_message
from aqueue._serde import decode_payload, encode_payload

DOC = {"rows": [{"id": i, "name": f"customer {i}", "tags": ["a", "b"]} for i in range(300)]}


def test_a_large_compressible_payload_is_stored_compressed_and_reads_back() -> None:
    plain = encode_payload((DOC,), {"k": 1}, 1 << 20, {"timeout": 5})
    stored = encode_payload((DOC,), {"k": 1}, 1 << 20, {"timeout": 5}, compress_over=4096)
    assert len(plain) > 10_000 and stored.startswith(COMPRESSED_PREFIX)
    assert len(stored) < len(plain) / 4
    assert decode_payload(stored) == json.loads(plain)
    assert decode_payload(plain) == json.loads(plain)  # rows written before: as they were


def test_small_incompressible_or_disabled_payloads_stay_plain() -> None:
    small = encode_payload(("x" * 100,), {}, 1 << 20, compress_over=4096)
    # 6 KB: compressed whole, and found not worth it; 20 KB: its first 4 KB tell
    noise = encode_payload((secrets.token_urlsafe(4_500),), {}, 1 << 20, compress_over=4096)
    probed = encode_payload((secrets.token_urlsafe(15_000),), {}, 1 << 20, compress_over=4096)
    off = encode_payload(("x" * 20_000,), {}, 1 << 20, compress_over=None)
    for text in (small, noise, probed, off):
        assert text.startswith('{"a":'), text[:20]


def test_the_size_limit_applies_to_the_arguments_as_given() -> None:
    with pytest.raises(PayloadTooLargeError, match="over max_payload_bytes=10000"):
        encode_payload(("x" * 20_000,), {}, 10_000, compress_over=100)


def test_a_compressed_message_is_version_2_and_its_retry_keeps_it() -> None:
    payload = encode_payload((DOC,), {}, 1 << 20, {"timeout": 5}, compress_over=0)
    raw = encode_message("id1", "t", payload, 0, 3, priority=1).encode()
    msg = decode_message(raw)
    assert (msg.version, msg.args, msg.options, msg.priority) == (2, [DOC], {"timeout": 5}, 1)
    again = decode_message(msg.follow_up())
    assert (again.version, again.args, again.attempts) == (2, [DOC], 1)
    plain = decode_message(encode_message("id2", "t", '{"a":[1],"k":{}}', 0, 3).encode())
    assert (plain.version, plain.args) == (1, [1])


def test_a_corrupt_compressed_payload_is_a_clear_error() -> None:
    raw = encode_message("id1", "t", '{"z":"bm90IHpsaWI="}', 0, 3).encode()
    with pytest.raises(SerializationError, match="compressed payload could not be read"):
        decode_message(raw)
    with pytest.raises(SerializationError, match="compressed payload"):
        decode_payload('{"z":"!!!"}')


@pytest.mark.parametrize("bad", [-1, 1.5, "4k", True])
def test_compress_over_is_checked(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="compress_over"):
        Queue("q", compress_over=bad)  # type: ignore[arg-type]


def test_zstd_payloads_are_version_3_and_read_back() -> None:
    plain = encode_payload((DOC,), {"k": 1}, 1 << 20, {"timeout": 5})
    stored = encode_payload(
        (DOC,), {"k": 1}, 1 << 20, {"timeout": 5}, compress_over=4096, compression="zstd"
    )
    assert stored.startswith(ZSTD_PREFIX) and len(stored) < len(plain) / 4
    assert decode_payload(stored) == json.loads(plain)
    msg = decode_message(encode_message("id1", "t", stored, 0, 3).encode())
    assert (msg.version, msg.args, msg.kwargs, msg.options) == (3, [DOC], {"k": 1}, {"timeout": 5})
    again = decode_message(msg.follow_up())
    assert (again.version, again.args, again.attempts) == (3, [DOC], 1)
    # random data is left as it is, as with zlib
    noise = encode_payload(
        (secrets.token_urlsafe(15_000),), {}, 1 << 20, compress_over=0, compression="zstd"
    )
    assert noise.startswith('{"a":')


def test_a_corrupt_zstd_payload_is_a_clear_error() -> None:
    with pytest.raises(SerializationError, match="compressed payload could not be read"):
        decode_payload('{"zstd":"bm90IHpzdGQ="}')


def test_an_unknown_codec_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="compression must be one of"):
        Queue("q", compression="lz4")


NO_ZSTD = """
import sys
sys.modules["zstandard"] = None  # as if not installed
sys.modules["compression"] = None
from aqueue import ConfigurationError, Queue
from aqueue._message import SUPPORTED_MESSAGE_VERSIONS, decode_message
from aqueue._errors import UnsupportedMessageError
from aqueue._serde import decode_payload
try:
    Queue("q", compression="zstd")
except ConfigurationError as exc:
    print("refused:", exc)
print("versions:", sorted(SUPPORTED_MESSAGE_VERSIONS))
try:
    decode_message(sys.argv[1].encode())
except UnsupportedMessageError as exc:
    print("left:", exc.job_id, "zstd" in str(exc))
try:
    decode_payload(sys.argv[2])
except Exception as exc:
    print("view:", type(exc).__name__, exc)
"""


def test_without_zstandard_zstd_is_refused_and_its_messages_left_for_others() -> None:
    stored = encode_payload((DOC,), {}, 1 << 20, compress_over=0, compression="zstd")
    raw = encode_message("id7", "t", stored, 0, 3)
    out = subprocess.run(
        [sys.executable, "-c", NO_ZSTD, raw, stored], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0].startswith("refused: compression='zstd'") and "aqueue[zstd]" in out[0]
    assert out[1:3] == ["versions: [1, 2]", "left: id7 True"]
    assert out[3].startswith("view: SerializationError") and "aqueue[zstd]" in out[3]
