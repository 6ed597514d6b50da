"""Compressed payloads: stored and sent compressed over the queue's ``compress_over``
when that saves a tenth, read back as the arguments given; plain ones read as before."""

from __future__ import annotations

import json
import secrets

import pytest

from aqueue import ConfigurationError, PayloadTooLargeError, Queue, SerializationError
from aqueue._compress import COMPRESSED_PREFIX
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
