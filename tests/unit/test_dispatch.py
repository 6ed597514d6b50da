"""Routing decisions (``_dispatch``): which Redis list or set a message goes to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, cast

import pytest

from aqueue._broker.broker import Broker
from aqueue._dispatch import (
    Dispatcher,
    Routes,
    route_follow_up,
    route_give_back,
    route_later,
    route_new,
    route_rows,
    row_message,
)
from aqueue._message import decode_message, encode_message
from aqueue._models import JobRecord, JobStatus, NewJob
from aqueue._serde import encode_payload

NOW = 1_000_000_000_000  # µs


def _new(i: int, *, priority: int = 0, run_at: int = NOW) -> NewJob:
    payload = encode_payload((i,), {}, 1000)
    return NewJob(f"id-{i}", "q", "t", payload, priority, 3, run_at, NOW)


def _row(i: int, *, priority: int = 0, stalls: int = 0, run_at: int = NOW) -> JobRecord:
    return JobRecord(
        id=f"id-{i}",
        queue="q",
        task="t",
        payload=encode_payload((i,), {}, 1000),
        status=JobStatus.TODO,
        priority=priority,
        attempts=1,
        stalls=stalls,
        max_attempts=3,
        run_at=run_at,
        lease_owner=None,
        lease_token=None,
        leased_until=None,
        result=None,
        error=None,
        unique_key=None,
        created_at=NOW,
        updated_at=NOW,
        finished_at=None,
    )


def _ids(messages: Sequence[str | bytes]) -> list[str]:
    return [decode_message(m if isinstance(m, bytes) else m.encode()).id for m in messages]


def test_new_jobs_go_to_the_ready_list_of_their_priority_level() -> None:
    jobs = [_new(1), _new(2, priority=5), _new(3, priority=-1), _new(4), _new(5, priority=1)]
    r = route_new(jobs, NOW)
    assert _ids(r.normal) == ["id-1", "id-4"]
    assert _ids(r.high) == ["id-2", "id-5"]
    assert _ids(r.low) == ["id-3"]
    assert not (r.delayed or r.group or r.alone)
    assert r.normal[0] == jobs[0].message()


def test_new_jobs_not_due_go_to_the_delayed_set_at_their_due_millisecond() -> None:
    r = route_new([_new(1, run_at=NOW + 1), _new(2, priority=3, run_at=NOW + 2_500_999)], NOW)
    assert [s for s, _ in r.delayed] == [(NOW + 1) // 1000, (NOW + 2_500_999) // 1000]
    assert _ids([m for _, m in r.delayed]) == ["id-1", "id-2"]
    assert not (r.normal or r.high or r.low)
    assert not route_new([], NOW)


@pytest.mark.parametrize(
    ("stalls", "max_stalls", "where"),
    [
        (0, 3, "normal"),
        (1, 3, "group"),
        (2, 3, "alone"),
        (1, 2, "alone"),
        (1, 5, "group"),
        (3, 5, "group"),
        (4, 5, "alone"),
    ],
)
def test_rows_that_stalled_go_to_a_suspect_lane(stalls: int, max_stalls: int, where: str) -> None:
    r = route_rows([_row(1, stalls=stalls, priority=2 if stalls else 0)], NOW, max_stalls)
    if where == "normal":
        assert _ids(r.normal) == ["id-1"]
    else:
        assert _ids(getattr(r, where)) == ["id-1"]
        assert not (r.normal or r.high or r.low or r.delayed)
    assert sum(map(len, (r.normal, r.high, r.low, r.group, r.alone))) == 1


def test_rows_route_by_priority_and_due_time() -> None:
    rows = [
        _row(1, priority=1),
        _row(2, priority=-2),
        _row(3),
        _row(4, run_at=NOW + 5000, stalls=2),  # not due: delayed, whatever its stalls
        _row(5, run_at=NOW),  # due exactly now
    ]
    r = route_rows(rows, NOW, 3)
    assert _ids(r.high) == ["id-1"]
    assert _ids(r.low) == ["id-2"]
    assert _ids(r.normal) == ["id-3", "id-5"]
    assert r.delayed == [((NOW + 5000) // 1000, row_message(rows[3]))]
    assert not (r.group or r.alone)


def test_a_row_message_carries_the_row_as_it_stands() -> None:
    m = decode_message(row_message(_row(7, priority=2, stalls=1)).encode())
    assert (m.id, m.attempts, m.stalls, m.priority, m.args) == ("id-7", 1, 1, 2, [7])


@pytest.mark.parametrize(
    ("priority", "run_at", "where"),
    [
        (0, NOW, "ready"),
        (0, NOW - 5, "ready"),
        (0, NOW + 1, "delayed"),
        (1, NOW, "delayed"),
        (-1, NOW - 10, "delayed"),
        (4, NOW + 7_000, "delayed"),
    ],
)
def test_follow_ups_reach_ready_only_at_the_normal_level(
    priority: int, run_at: int, where: str
) -> None:
    r = Routes()
    route_follow_up(r, b"m", priority, run_at, NOW)
    if where == "ready":
        assert r.normal == [b"m"] and not r.delayed
    else:
        assert r.delayed == [(run_at // 1000, b"m")] and not r.normal
    assert not (r.high or r.low or r.group or r.alone)


def test_give_backs_and_later_deliveries_go_through_the_delayed_set() -> None:
    r = Routes()
    route_give_back(r, b"a", NOW + 999)
    route_later(r, b"b", NOW + 999)
    assert r.delayed == [((NOW + 999) // 1000, b"a"), ((NOW + 999) // 1000 + 1, b"b")]
    assert not r.normal


def test_a_message_keeps_its_payload_and_its_follow_up_reuses_it() -> None:
    payload = encode_payload(("x", {"p": '"p":{'}), {"k": [1, 2]}, 1000)
    raw = encode_message('i"d,"p":{', "task", payload, 2, 5, -3, 1).encode()
    msg = decode_message(raw)
    assert msg.payload == payload
    follow = decode_message(msg.follow_up())
    assert follow.payload == payload
    assert (follow.id, follow.attempts, follow.max_attempts) == ('i"d,"p":{', 3, 5)
    assert (follow.priority, follow.stalls, follow.args, follow.kwargs) == (
        -3,
        1,
        ["x", {"p": '"p":{'}],
        {"k": [1, 2]},
    )


def test_a_message_written_otherwise_has_its_payload_encoded_again() -> None:
    data = {"p": {"a": [1], "k": {}, "o": {"timeout": 2}}, "v": 1, "id": "j", "t": "t"}
    data |= {"n": 0, "m": 1}
    for raw in (json.dumps(data).encode(), json.dumps(data, separators=(",", ":")).encode()):
        msg = decode_message(raw)
        assert json.loads(msg.payload) == data["p"]
        assert msg.options == {"timeout": 2}


class _FakeBroker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def dispatch(self, ready: Any, delayed: Any, *, high: Any = (), low: Any = ()) -> str:
        self.calls.append(("dispatch", (list(ready), list(delayed), list(high), list(low))))
        return "e1"

    async def dispatch_suspects(self, messages: Any, alone: Any = ()) -> str:
        self.calls.append(("suspects", (list(messages), list(alone))))
        return "e2"

    async def settle(self, runner_id: str, remove: Any, **kw: Any) -> int:
        self.calls.append(("settle", (runner_id, list(remove), kw)))
        return len(remove)


def test_the_dispatcher_sends_each_kind_with_one_broker_call() -> None:
    fake = _FakeBroker()
    d = Dispatcher(cast(Broker, fake))

    async def go() -> None:
        assert await d.rows([], NOW) is None
        assert await d.send(Routes()) is None
        assert fake.calls == []
        assert await d.rows([_row(1, stalls=1)], NOW) == "e2"
        assert await d.rows([_row(2), _row(3, stalls=2)], NOW) == "e1"
        assert await d.new_jobs([_new(4, priority=1)], NOW) == "e1"
        follow = Routes()
        route_follow_up(follow, b"f", 0, NOW, NOW)
        await d.settle("r1", [b"x"], follow, ["id-9"])
        await d.settle("r1", [b"y"])
        with pytest.raises(ValueError, match="settle sends"):
            await d.settle("r1", [b"z"], Routes(high=[b"h"]))

    asyncio.run(go())
    kinds = [k for k, _ in fake.calls]
    assert kinds == ["suspects", "dispatch", "suspects", "dispatch", "settle", "settle"]
    assert fake.calls[4][1] == (
        "r1",
        [b"x"],
        {"ready": [b"f"], "delayed": [], "finished": ["id-9"]},
    )
    assert fake.calls[5][1] == ("r1", [b"y"], {"finished": ()})
