"""Missed ticks are those of the schedule's lifetime: a schedule seen for the first time
starts from now, whatever its catch-up window and missed-tick policy."""

from __future__ import annotations

import pytest

from aqueue._cron import Schedule, due

S = 1_000_000
NOW = 1_800_000_000 * S  # on a whole second


@pytest.mark.parametrize("missed", ["all", "latest", "skip"])
def test_a_schedule_first_seen_now_has_missed_nothing(missed: str) -> None:
    every_second = Schedule("t", every=1, missed=missed, catch_up=3600)  # type: ignore[arg-type]
    assert due(every_second, None, NOW, first_seen_us=NOW) == []
    # then it runs each tick as it comes
    assert due(every_second, NOW, NOW + 2 * S, first_seen_us=NOW) == [NOW + S, NOW + 2 * S]


def test_missed_ticks_start_after_the_schedule_was_first_seen() -> None:
    sched = Schedule("t", every=1, missed="all", catch_up=20)
    assert due(sched, None, NOW, first_seen_us=NOW - 3 * S) == [NOW - 2 * S, NOW - S, NOW]
    latest = Schedule("t", every=1, missed="latest", catch_up=20)
    assert due(latest, None, NOW, first_seen_us=NOW - 3 * S) == [NOW]


def test_missed_ticks_of_an_old_schedule_stay_within_its_catch_up_window() -> None:
    sched = Schedule("t", every=1, missed="all", catch_up=20)
    ticks = due(sched, None, NOW, first_seen_us=NOW - 3600 * S)
    assert ticks == [NOW - 19 * S + i * S for i in range(20)]


def test_a_schedule_key_names_its_queue_task_and_timing() -> None:
    a = Schedule("t", every=1, missed="all").key("q")
    assert a == Schedule("t", every=1, missed="skip", catch_up=5).key("q")
    assert len(a) <= 64  # the meta table's name column
    others = {
        Schedule("t", every=2).key("q"),
        Schedule("u", every=1).key("q"),
        Schedule("t", every=1).key("r"),
        Schedule("t", cron="* * * * *").key("q"),
    }
    assert a not in others and len(others) == 4
