"""The runner's sans-I/O core at its edges: revocation, slot accounting, a stop that
comes while a claim is in flight, and the read-only view the claimer and recorder get."""

from __future__ import annotations

from aqueue._runner.core import CoreView, RunnerCore

LEASE, MARGIN = 10.0, 2.0  # local deadline: last ack + 8 s


def core(concurrency: int = 4, prefetch: int = 0, now: float = 100.0) -> RunnerCore[str, str]:
    return RunnerCore(
        concurrency=concurrency, prefetch=prefetch, lease=LEASE, margin=MARGIN, now=now
    )


# -- revocation ------------------------------------------------------------------------


def test_the_local_deadline_itself_is_not_past_it() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    assert not c.deadline_passed(108.0)
    assert c.revoke_all(now=108.0) == []
    assert not c.revoked


def test_a_revoked_run_is_renewed_until_its_cancellation_is_seen() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    assert c.revoke_all(now=109.0) == ["task-a"]
    # The handler may not have stopped yet: its lease is still asked for.
    assert c.renewal_items() == [("a", "t1")]
    assert c.revoked_by_us("a", "t1")
    assert c.renewal_items() == []
    assert not c.revoked


def test_revoking_twice_cancels_twice_but_is_consumed_once() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    assert c.revoke_all(now=109.0) == ["task-a"]
    assert c.revoke_all(now=110.0) == ["task-a"]  # still running: cancelled again
    assert c.revoked == {("a", "t1")}
    assert c.revoked_by_us("a", "t1")
    assert not c.revoked_by_us("a", "t1")


def test_past_the_deadline_a_run_whose_handler_ended_is_left_to_record_its_outcome() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    c.started("b", "t2", "task-b")
    c.handler_ended("b", "t2")
    # Only a handler still running is stopped; b's outcome is fenced by its token.
    assert c.revoke_all(now=109.0) == ["task-a"]
    assert c.revoked == {("a", "t1")}
    assert not c.revoked_by_us("b", "t2")
    # b's lease is still renewed: once SQL answers again, it may be recorded in time.
    assert ("b", "t2") in c.renewal_items()


def test_a_lost_lease_does_not_cancel_a_run_whose_handler_ended() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    c.handler_ended("a", "t1")
    assert c.on_lost(c.renewal_items(), ["a"], recording=set(), confirming=set()) == []


def test_forgetting_a_run_forgets_that_its_handler_ended() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    c.handler_ended("a", "t1")
    c.forget("a", "t1")
    assert not c.settling
    # The same job claimed again under the same token (an open claim taken again) runs
    # its handler afresh: the deadline cancels it.
    c.started("a", "t1", "task-a2")
    assert c.revoke_all(now=109.0) == ["task-a2"]


def test_a_run_claimed_after_the_last_renewal_counts_its_deadline_from_its_claim() -> None:
    c = core(now=100.0)
    c.started("old", "t1", "task-old", claimed_at=99.0)
    c.started("new", "t2", "task-new", claimed_at=105.0)  # its claim set a fresh lease
    assert c.revoke_all(now=109.0) == ["task-old"]
    assert c.revoke_all(now=113.5) == ["task-old", "task-new"]
    c.forget("new", "t2")
    assert ("new", "t2") not in c.claimed_at


def test_an_acknowledged_renewal_puts_the_deadline_off_again() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    c.acknowledged(104.0)
    assert c.revoke_all(now=109.0) == []
    assert c.revoke_all(now=112.5) == ["task-a"]


def test_a_run_started_after_the_renewal_was_sent_is_not_cancelled_by_it() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    sent = c.renewal_items()
    c.started("b", "t2", "task-b")  # claimed while the renewal was in flight
    assert c.on_lost(sent, ["a", "b"], recording=set(), confirming=set()) == [("a", "task-a")]
    assert c.revoked == {("a", "t1")}


def test_forgetting_a_revoked_run_drops_its_revocation() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    c.on_lost(c.renewal_items(), ["a"], recording=set(), confirming=set())
    c.forget("a", "t1")  # settled by another path (its finish was refused)
    assert not c.revoked and not c.running
    assert not c.revoked_by_us("a", "t1")


def test_a_cancellation_not_revoked_here_keeps_the_run() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    assert not c.revoked_by_us("a", "t1")  # the handler's own cancellation
    assert c.running == {"a": ("t1", "task-a")}


def test_a_revocation_of_an_old_token_leaves_the_new_run_alone() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    c.on_lost(c.renewal_items(), ["a"], recording=set(), confirming=set())
    c.started("a", "t2", "task-a2")  # the job claimed again here under a new token
    assert not c.revoked_by_us("a", "t2")
    assert c.revoked_by_us("a", "t1")
    assert c.running == {"a": ("t2", "task-a2")}  # forgetting t1 kept t2's lease


# -- slot accounting --------------------------------------------------------------------


def test_a_small_runner_waits_for_one_free_slot_only() -> None:
    c = core(concurrency=2)  # 2 // 4 == 0: the low water is still one slot
    c.take_slots(1)
    assert c.fetch_size(10, busy=True) == 1
    c.take_slots(1)
    assert c.fetch_size(10, busy=True) == 0


def test_the_low_water_never_exceeds_the_batch() -> None:
    c = core(concurrency=40)
    c.take_slots(38)  # 2 free; a quarter of the slots would be 10
    assert c.fetch_size(2, busy=True) == 2
    assert c.fetch_size(3, busy=True) == 0


def test_prefetch_slots_are_fetched_like_the_others() -> None:
    c = core(concurrency=1, prefetch=3)
    assert c.fetch_size(10, busy=False) == 4
    c.take_slots(4)
    assert c.fetch_size(10, busy=False) == 0
    c.release_slots(1)
    assert c.fetch_size(10, busy=True) == 1


def test_held_slots_mean_not_all_free_even_when_no_task_runs() -> None:
    c = core(concurrency=2)
    c.take_slots(1)
    assert not c.all_free(busy=False)
    c.release_slots(1)
    assert c.all_free(busy=False)


def test_over_taken_slots_fetch_nothing_until_enough_come_back() -> None:
    c = core(concurrency=2)
    c.take_slots(3)  # a move that returned more than was asked for
    assert c.free == -1
    assert c.fetch_size(10, busy=False) == 0
    c.release_slots(1)
    assert c.fetch_size(10, busy=False) == 0
    c.release_slots(1)
    assert c.fetch_size(10, busy=False) == 1


# -- a stop while a claim is in flight --------------------------------------------------


def test_a_claim_that_returns_after_the_stop_starts_nothing_and_its_messages_go_back() -> None:
    c = core(now=100.0)
    c.take_slots(2)
    c.hold("claim-1", [b"m1", b"m2"])
    c.stop()  # the stop signal while the claim statement is in flight
    assert not c.may_start(sent_at=100.5, now=101.0)  # well within the lease
    assert c.orphans([b"m1", b"m2"]) == []  # still held by the claim's task
    c.drop("claim-1")
    c.release_slots(2)
    assert c.orphans([b"m1", b"m2"]) == [b"m1", b"m2"]  # requeued at exit
    assert c.all_free(busy=False)


def test_a_run_revoked_before_the_stop_is_a_shutdown_cancellation_after_it() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    assert c.revoke_all(now=109.0) == ["task-a"]
    c.stop()
    assert not c.revoked_by_us("a", "t1")
    assert "a" in c.running  # the shutdown settles it (and releases the lease)
    c.forget("a", "t1")
    assert not c.running and not c.revoked


def test_stop_is_idempotent_and_leases_are_still_renewed() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    c.stop()
    c.stop()
    assert c.stopping
    assert c.renewal_items() == [("a", "t1")]  # handlers get the grace period


# -- the view the claimer and the recorder read -----------------------------------------


def test_claim_expiry_counts_from_the_later_of_ack_and_claim() -> None:
    c = core(now=100.0)
    assert not c.claim_expired(sent_at=90.0, now=108.0)
    assert c.claim_expired(sent_at=90.0, now=108.5)
    assert not c.claim_expired(sent_at=105.0, now=113.0)
    assert c.claim_expired(sent_at=105.0, now=113.5)
    c.stop()  # unlike may_start, expiry does not depend on stopping
    assert not c.claim_expired(sent_at=105.0, now=113.0)


def test_the_core_is_the_view_and_the_view_follows_it() -> None:
    c = core()
    view: CoreView = c
    assert not view.stopping and view.epoch is None
    c.epoch_changed("e1")
    c.stop()
    assert view.stopping and view.epoch == "e1"
