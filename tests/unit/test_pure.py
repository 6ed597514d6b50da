"""Pure decision code and data formats: no servers, no clock reads."""

from __future__ import annotations

import json
import os
import random
import uuid

import pytest

from aqueue import Backoff, ConfigurationError, JobStatus, Options, SerializationError
from aqueue._decisions import (
    decide_claim_loss,
    decide_failure,
    decide_reclaim,
    local_deadline,
    suspect_lane,
)
from aqueue._ids import new_job_id, new_job_ids
from aqueue._message import decode_message, encode_message, message_job_id
from aqueue._models import IdRun, NewJob, id_runs, validate_identifier
from aqueue._serde import decode_error, dumps, encode_error, encode_payload

S = 1_000_000


def test_backoff_grows_and_is_capped() -> None:
    b = Backoff(base=1, factor=2, cap=10, jitter=0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_backoff_jitter_stays_in_upper_half() -> None:
    b = Backoff(base=4, factor=2, cap=100, jitter=0.5)
    rnd = random.Random(7)
    delays = [b.delay(1, rnd) for _ in range(200)]
    assert all(2 <= d <= 4 for d in delays)
    assert len(set(delays)) > 100


def test_failure_retries_until_attempts_are_used() -> None:
    b = Backoff(base=1, jitter=0)
    d = decide_failure(attempt=1, max_attempts=3, now=10 * S, retryable=True, backoff=b)
    assert d.status == "todo" and d.run_at == 11 * S
    d = decide_failure(attempt=2, max_attempts=3, now=10 * S, retryable=True, backoff=b)
    assert d.status == "todo" and d.run_at == 12 * S
    d = decide_failure(attempt=3, max_attempts=3, now=10 * S, retryable=True, backoff=b)
    assert d.status == "failed" and d.run_at is None


def test_failure_not_retryable_and_requested_delay() -> None:
    b = Backoff(base=1, jitter=0)
    assert decide_failure(attempt=1, max_attempts=9, now=0, retryable=False, backoff=b).status == (
        "failed"
    )
    d = decide_failure(
        attempt=1, max_attempts=9, now=5 * S, retryable=True, backoff=b, requested_delay=0.25
    )
    assert d.run_at == 5 * S + 250_000


def test_claim_loss_never_drops_an_unfinished_job() -> None:
    now = 100 * S
    assert decide_claim_loss(
        status=JobStatus.DONE, run_at=0, leased_until=None, now=now
    ).action == ("drop")
    assert decide_claim_loss(status=None, run_at=0, leased_until=None, now=now).action == "drop"
    not_due = decide_claim_loss(
        status=JobStatus.TODO, run_at=now + 5 * S, leased_until=None, now=now
    )
    assert (not_due.action, not_due.until) == ("delay", now + 5 * S)
    # running elsewhere: the reclaimer owns it (a fresh copy comes if its runner dies)
    leased = decide_claim_loss(
        status=JobStatus.RUNNING, run_at=0, leased_until=now + 30 * S, now=now
    )
    assert leased.action == "drop"
    # a copy made before a reclaim (stall counts differ) is stale: the fresh copy exists
    stale = decide_claim_loss(
        status=JobStatus.TODO, run_at=0, leased_until=None, now=now, stalls=1, message_stalls=0
    )
    assert stale.action == "drop"
    # a copy made before a retry or a repush (attempt counts differ): the same
    older = decide_claim_loss(
        status=JobStatus.TODO, run_at=0, leased_until=None, now=now, attempts=2, message_attempts=1
    )
    assert older.action == "drop"
    current = decide_claim_loss(
        status=JobStatus.TODO,
        run_at=now + S,
        leased_until=None,
        now=now,
        attempts=2,
        message_attempts=2,
    )
    assert (current.action, current.until) == ("delay", now + S)


def test_claim_fences_take_the_later_of_two_copies() -> None:
    from aqueue._store.values import fences

    got = fences([("a", 0, 0), ("b", 0, 0), ("a", 0, 1), ("a", 1, 0), ("b", 0, 0)])
    assert got == {"a": (1, 0), "b": (0, 0)}


def test_lease_helpers() -> None:
    assert local_deadline(100.0, 30.0, 10.0) == 120.0


def test_message_round_trip_and_version() -> None:
    payload = encode_payload((1, "a"), {"k": [1, 2]}, 1000)
    raw = encode_message("id-1", "task", payload, 2, 5).encode()
    msg = decode_message(raw)
    assert (msg.id, msg.task, msg.args, msg.kwargs, msg.attempts, msg.max_attempts) == (
        "id-1",
        "task",
        [1, "a"],
        {"k": [1, 2]},
        2,
        5,
    )
    assert json.loads(raw)["v"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"v":1}',
        b'{"v":99,"id":"x","t":"t","n":0,"m":1,"p":{"a":[],"k":{}}}',
        b'{"v":1,"id":"x","t":"t","n":0,"m":1,"p":{"a":{},"k":{}}}',
        b"\xff\xfe",
        b"",
        b'{"v":1,"id":"x","t":"t","n":0,"m":1,"p":{"a":[],"k":{}}} trailing',
    ],
)
def test_malformed_messages_are_rejected(raw: bytes) -> None:
    with pytest.raises(SerializationError):
        decode_message(raw)


def test_message_decoding_tolerates_whitespace_as_json_does() -> None:
    raw = encode_message("id-1", "task", encode_payload((), {}, 1000), 0, 1).encode()
    for padded in (b" " + raw, raw + b"\n", b"\t" + raw + b" \r\n"):
        assert decode_message(padded).id == "id-1"


@pytest.mark.parametrize(
    "value",
    [None, 0, -7, 10**40, True, False, "", 'é"\\\n\u2028', 1.5, [None], {"a": 1}],
)
def test_result_encoding_matches_json(value: object) -> None:
    assert dumps(value, "result") == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_result_encoding_rejects_what_json_cannot() -> None:
    with pytest.raises(SerializationError):
        dumps(float("nan"), "result")
    with pytest.raises(SerializationError):
        dumps(object(), "result")
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(SerializationError, match="contains itself"):
        dumps({"a": looped}, "result")
    with pytest.raises(SerializationError):
        encode_payload((looped,), {}, 1000)
    assert dumps([1], "result") == "[1]"  # a failed call leaves the encoder clean
    with pytest.raises(SerializationError, match="not valid Unicode"):
        encode_payload(("\ud800",), {}, 1000)
    assert encode_payload(("é",), {}, 19) == '{"a":["é"],"k":{}}'  # 18 characters, 19 bytes
    with pytest.raises(SerializationError, match="19 bytes"):
        encode_payload(("é",), {}, 18)


def test_message_job_id_best_effort() -> None:
    assert message_job_id(b'{"id":"abc"}') == "abc"
    assert message_job_id(b"junk") is None


def test_job_ids_are_uuid7_unique_and_time_ordered() -> None:
    ids = [new_job_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    stamps = [i[:13] for i in ids]
    assert stamps == sorted(stamps)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_draws_other_job_ids_than_its_parent() -> None:
    new_job_id()  # the parent has random bytes buffered
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without pytest's cleanup
        os.write(w, " ".join(new_job_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = f.read().split()
    os.waitpid(pid, 0)
    parent = [new_job_id() for _ in range(50)]
    assert len(child) == 50
    assert not {c[14:] for c in child} & {p[14:] for p in parent}  # the random parts


def test_batch_ids_are_uuid7_and_one_contiguous_range_per_65536() -> None:
    ids = new_job_ids(70_000)
    assert len(set(ids)) == 70_000 and ids == sorted(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(
        p.version == 7 and p.variant == uuid.RFC_4122 and str(p) == i
        for p, i in zip(parsed, ids, strict=True)
    )
    first, second = parsed[:65_536], parsed[65_536:]
    assert [p.int - first[0].int for p in first] == list(range(65_536))
    assert [p.int - second[0].int for p in second] == list(range(70_000 - 65_536))
    assert ids[0][:32] != ids[65_536][:32]  # a fresh random prefix for the next range
    assert new_job_ids(3)[0][:32] != new_job_ids(3)[0][:32]  # and for every batch
    assert new_job_ids(0) == []


def _jobs(ids: list[str], created_at: int = 1, explicit: bool = False) -> list[NewJob]:
    return [NewJob(i, "q", "t", "{}", 0, 1, 0, created_at, None, explicit) for i in ids]


def test_id_runs_name_only_consecutive_batch_ids_of_one_instant() -> None:
    a, b = new_job_ids(5), new_job_ids(3)
    lone = new_job_id()
    jobs = [
        *_jobs(a[:3]),
        *_jobs([lone]),
        *_jobs(a[3:]),  # the same batch after a gap: a run of its own
        *_jobs(b[:1], created_at=2),
        *_jobs(b[1:], created_at=3),  # another instant: not the same run
        *_jobs(["explicit-1", "explicit-2"], explicit=True),
        *_jobs([a[0]], explicit=True),  # an explicit id is never part of a run
    ]
    singles, runs = id_runs(jobs)
    assert runs == [IdRun(a[0], a[2], 1), IdRun(a[3], a[4], 1), IdRun(b[1], b[2], 3)]
    assert singles == [lone, b[0], "explicit-1", "explicit-2", a[0]]
    # Not consecutive (one missing): two runs, never one range over a foreign id.
    singles, runs = id_runs(_jobs([a[0], a[1], a[3], a[4]]))
    assert (singles, runs) == ([], [IdRun(a[0], a[1], 1), IdRun(a[3], a[4], 1)])
    assert id_runs([]) == ([], [])


def test_identifiers_are_validated() -> None:
    assert validate_identifier("aqueue_jobs", "table name") == "aqueue_jobs"
    for bad in ("1jobs", "jobs;drop", "a" * 49, "", "jobs`x"):
        with pytest.raises(ConfigurationError):
            validate_identifier(bad, "table name")


def test_payload_limits_and_no_pickle() -> None:
    with pytest.raises(SerializationError):
        encode_payload((object(),), {}, 1000)
    with pytest.raises(SerializationError, match="max_payload_bytes=10"):
        encode_payload(("x" * 100,), {}, 10)
    with pytest.raises(SerializationError):
        encode_payload((float("nan"),), {}, 1000)


def test_error_encoding_round_trip() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        text = encode_error(exc)
    etype, msg, tb = decode_error(text)
    assert (etype, msg) == ("ValueError", "boom") and "Traceback" in tb


def test_options_validation() -> None:
    with pytest.raises(ConfigurationError):
        Options(delay=-1)
    with pytest.raises(ConfigurationError):
        Options(retries=-1)
    with pytest.raises(ConfigurationError):
        Options(job_id="x" * 37)
    assert Options(delay=2).start_time_us(10 * S) == 12 * S
    assert Options(run_at=20.0, delay=5).start_time_us(10 * S) == 20 * S


def test_backoff_sequence_of_intervals() -> None:
    b = Backoff.sequence(5, 8, 9)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [5, 8, 9, 9, 9]
    with pytest.raises(ValueError):
        Backoff.sequence()


def test_cron_ticks_and_missed_policies() -> None:
    from aqueue._cron import Schedule, due, tick_job_id

    minute = 60 * S
    five = Schedule("t", cron="*/5 * * * *")
    t0 = 1_800_000_000 * S  # 2027-01-15 08:00:00 UTC, on a 5-minute boundary
    assert list(five.ticks(t0, t0 + 11 * minute)) == [t0 + 5 * minute, t0 + 10 * minute]
    assert due(five, t0, t0 + 4 * minute) == []
    # first look after downtime: latest missed tick only, all of them, or none
    late = t0 + 17 * minute
    assert due(five, None, late) == [t0 + 15 * minute]
    assert due(Schedule("t", cron="*/5 * * * *", missed="all", catch_up=1200), None, late) == [
        t0 + 0 * minute,
        t0 + 5 * minute,
        t0 + 10 * minute,
        t0 + 15 * minute,
    ]
    assert due(Schedule("t", cron="*/5 * * * *", missed="skip"), None, late) == []
    every = Schedule("t", every=0.5)
    assert list(every.ticks(10 * S, 11 * S)) == [10 * S + 500_000, 11 * S]
    assert tick_job_id("q", "t", 5) == tick_job_id("q", "t", 5) != tick_job_id("q", "t", 6)
    assert len(tick_job_id("q", "t", 5)) <= 36


def test_reclaim_fails_a_job_at_the_stall_limit_and_otherwise_obeys_the_destination() -> None:
    d = decide_reclaim(stalls=0, max_stalls=3, destination="todo", owner="r1")
    assert d.status is JobStatus.TODO and d.reason is None
    d = decide_reclaim(stalls=2, max_stalls=3, destination="todo", owner="r1")
    assert d.status is JobStatus.FAILED
    assert d.reason is not None and "r1" in d.reason and "limit 3" in d.reason
    d = decide_reclaim(stalls=0, max_stalls=3, destination="failed", owner=None)
    assert d.status is JobStatus.FAILED and d.reason is not None and "unknown" in d.reason


@pytest.mark.parametrize(
    ("stalls", "max_stalls", "lane"),
    [
        (0, 3, None),
        (1, 3, "group"),
        (2, 3, "alone"),
        (5, 3, "alone"),
        (1, 2, "alone"),
        (1, 5, "group"),
        (3, 5, "group"),
        (4, 5, "alone"),
    ],
)
def test_suspect_lane(stalls: int, max_stalls: int, lane: str | None) -> None:
    """A stalled job never goes back to a ready list; one stall before the limit it runs
    alone, so a poison job's last stall is charged to nobody else."""
    assert suspect_lane(stalls, max_stalls) == lane
