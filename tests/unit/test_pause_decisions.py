"""Pure decisions of a paused process: how long it was paused, how long its reclaimer
holds back before taking expired leases, and how long its lease renewal may wait."""

from __future__ import annotations

import pytest

from aqueue._decisions import paused_for, reclaim_hold, renewal_time_limit


def test_a_sleep_on_time_is_no_pause() -> None:
    assert paused_for(asked=0.5, slept=0.5004, wall_slept=0.5005) == pytest.approx(0.0004)


def test_an_overrun_sleep_is_a_pause_of_the_overrun() -> None:
    # SIGSTOP, or a blocked event loop: both clocks ran on
    assert paused_for(asked=0.5, slept=6.5, wall_slept=6.5) == pytest.approx(6.0)


def test_wall_time_ahead_of_monotonic_time_is_a_suspended_machine() -> None:
    # the monotonic clock stops while a VM is snapshotted or a laptop sleeps
    assert paused_for(asked=5.0, slept=5.0, wall_slept=13.0) == pytest.approx(8.0)


def test_wall_clock_stepped_back_is_no_pause() -> None:
    assert paused_for(asked=1.0, slept=1.0, wall_slept=-30.0) == 0.0


@pytest.mark.parametrize(
    ("paused", "hold"),
    [(0.0, 0.0), (0.2, 0.0), (0.49, 0.0), (0.51, 1.0), (8.0, 1.0)],
)
def test_the_reclaimer_holds_one_heartbeat_after_a_pause_over_half_of_one(
    paused: float, hold: float
) -> None:
    assert reclaim_hold(paused=paused, heartbeat=1.0) == hold


@pytest.mark.parametrize(
    ("until_deadline", "limit"),
    [
        (20.0, 10.0),  # far from the deadline: a heartbeat, as always
        (4.0, 4.0),  # a renewal in trouble gives up at the deadline, not a heartbeat on
        (1.0, 2.5),  # ... but never in less than the grace
        (0.0, 2.5),
        (-30.0, 2.5),  # back from a pause past it: the grace only
    ],
)
def test_a_renewal_waits_until_the_deadline_or_a_grace_of_half_a_heartbeat(
    until_deadline: float, limit: float
) -> None:
    # lease 30 s, heartbeat 10 s, margin 5 s: the grace is half the smaller of the two
    got = renewal_time_limit(until_deadline=until_deadline, heartbeat=10.0, margin=5.0)
    assert got == limit


def test_the_grace_is_shorter_than_a_paused_reclaimers_hold_and_the_margin() -> None:
    for heartbeat, margin in [(10.0, 10.0), (0.8, 2 / 3), (1.0, 0.2), (5.0, 20.0)]:
        grace = renewal_time_limit(until_deadline=-1.0, heartbeat=heartbeat, margin=margin)
        assert grace < reclaim_hold(paused=heartbeat, heartbeat=heartbeat)
        assert grace < margin
