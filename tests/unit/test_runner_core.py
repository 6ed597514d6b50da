"""The runner's sans-I/O core: slot accounting, leases, revocation, reconcile."""

from __future__ import annotations

from aqueue._runner.core import RunnerCore

LEASE, MARGIN = 10.0, 2.0  # local deadline: last ack + 8 s


def core(concurrency: int = 4, prefetch: int = 0, now: float = 100.0) -> RunnerCore[str, str]:
    return RunnerCore(
        concurrency=concurrency, prefetch=prefetch, lease=LEASE, margin=MARGIN, now=now
    )


def test_slots_are_concurrency_plus_prefetch_and_released_once() -> None:
    c = core(concurrency=4, prefetch=2)
    assert c.slots == c.free == 6
    c.take_slots(3)
    assert c.free == 3
    c.release_slots(3)
    assert c.free == 6
    assert c.all_free(busy=False)
    assert not c.all_free(busy=True)


def test_fetch_waits_for_a_quarter_of_the_slots_while_busy() -> None:
    c = core(concurrency=16)
    c.take_slots(14)  # 2 free, low water is min(batch, 16 // 4) = 4
    assert c.fetch_size(50, busy=True) == 0
    assert c.fetch_size(50, busy=False) == 2  # idle: fetch at once
    c.release_slots(3)
    assert c.fetch_size(50, busy=True) == 5
    assert c.fetch_size(2, busy=True) == 2  # never more than a batch


def test_no_free_slot_means_no_fetch() -> None:
    c = core(concurrency=1)
    c.take_slots(1)
    assert c.fetch_size(10, busy=False) == 0


def test_no_start_after_stop() -> None:
    c = core()
    assert c.may_start(sent_at=100.0, now=101.0)
    c.stop()  # a claim in flight when the stop came
    assert not c.may_start(sent_at=100.0, now=101.0)


def test_no_start_past_the_local_deadline_counted_from_the_claim_or_its_renewal() -> None:
    c = core(now=90.0)
    c.started("a", "t1", "handler-a")
    c.acknowledged(100.0, c.renewal_items())  # a renewal named run (a, t1)
    assert c.may_start(sent_at=90.0, now=108.0, run=("a", "t1"))
    assert not c.may_start(sent_at=90.0, now=108.5, run=("a", "t1"))  # last ack 100 + 8
    assert c.may_start(sent_at=105.0, now=112.0, run=("a", "t1"))  # the claim set the lease
    assert not c.may_start(sent_at=105.0, now=113.5, run=("a", "t1"))


def test_a_renewal_that_did_not_name_a_run_does_not_vouch_for_its_lease() -> None:
    """A claim sent before a pause whose reply is read after it: the run registers after
    the renewal sent on resuming took its items, so that renewal's acknowledgement says
    nothing of this lease (which may have been reclaimed meanwhile)."""
    c = core(now=90.0)
    c.started("a", "t1", "handler-a")
    c.acknowledged(100.0, c.renewal_items())  # names (a, t1) only
    c.started("b", "t1", "handler-b")
    assert c.may_start(sent_at=90.0, now=108.0, run=("a", "t1"))
    assert not c.may_start(sent_at=90.0, now=108.0, run=("b", "t1"))  # claim 90 + 8
    assert c.may_start(sent_at=90.0, now=97.9, run=("b", "t1"))
    assert not c.may_start(sent_at=90.0, now=108.0, run=("a", "t2"))  # another run of a


def test_a_renewal_vouches_only_for_the_runs_it_renewed() -> None:
    """A claimed run waiting for a slot is named by the renewal sent on resuming from a
    pause; if SQL did not renew it (reclaimed meanwhile), the acknowledgement says
    nothing of its lease: it must not start once a slot frees."""
    c = core(now=90.0)
    c.started("a", "t1", "handler-a")
    c.started("b", "t1", "waiting-b")
    c.acknowledged(100.0, c.renewal_items(), lost={"b"})
    assert c.may_start(sent_at=90.0, now=108.0, run=("a", "t1"))
    assert not c.may_start(sent_at=90.0, now=108.0, run=("b", "t1"))


def test_deadline_follows_acknowledged_renewals_only() -> None:
    c = core(now=100.0)
    assert not c.deadline_passed(108.0)
    assert c.deadline_passed(108.1)
    c.acknowledged(105.0)
    assert not c.deadline_passed(108.1)
    assert c.deadline_passed(113.1)


def test_a_lost_lease_cancels_its_handler_and_marks_it_revoked() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    c.started("b", "t2", "task-b")
    sent = c.renewal_items()
    assert c.on_lost(sent, ["a"], recording=set(), confirming=set()) == [("a", "task-a")]
    assert ("a", "t1") in c.revoked
    assert ("b", "t2") not in c.revoked


def test_a_claim_being_confirmed_is_not_cancelled_by_a_lost_renewal() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    sent = c.renewal_items()
    assert c.on_lost(sent, ["a"], recording=set(), confirming={("a", "t1")}) == []
    assert c.on_lost(sent, ["a"], recording={("a", "t1")}, confirming=set()) == []
    assert not c.revoked


def test_a_job_claimed_again_under_another_token_is_not_cancelled() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    sent = c.renewal_items()
    c.forget("a", "t1")
    c.started("a", "t2", "task-a2")  # claimed again while the renewal was in flight
    assert c.on_lost(sent, ["a", "unknown"], recording=set(), confirming=set()) == []


def test_forget_only_forgets_its_own_token() -> None:
    c = core()
    c.started("a", "t2", "task")
    c.forget("a", "t1")
    assert "a" in c.running
    c.forget("a", "t2")
    assert "a" not in c.running


def test_past_the_deadline_every_running_handler_is_revoked() -> None:
    c = core(now=100.0)
    c.started("a", "t1", "task-a")
    c.started("b", "t2", "task-b")
    assert c.revoke_all(now=107.0) == []
    assert sorted(c.revoke_all(now=109.0)) == ["task-a", "task-b"]
    assert c.revoked == {("a", "t1"), ("b", "t2")}


def test_a_revocation_is_ours_once_and_not_during_shutdown() -> None:
    c = core()
    c.started("a", "t1", "task-a")
    c.on_lost(c.renewal_items(), ["a"], recording=set(), confirming=set())
    assert c.revoked_by_us("a", "t1")
    assert "a" not in c.running
    assert not c.revoked_by_us("a", "t1")  # consumed
    c.started("b", "t2", "task-b")
    c.on_lost(c.renewal_items(), ["b"], recording=set(), confirming=set())
    c.stop()
    assert not c.revoked_by_us("b", "t2")  # a shutdown cancellation


def test_reconcile_returns_only_messages_no_task_holds() -> None:
    c = core()
    c.hold("claim-1", [b"m1", b"m2"])
    c.hold("job-2", [b"m2"])
    assert c.orphans([b"m1", b"m2", b"m2", b"m2", b"m3"]) == [b"m2", b"m3"]
    c.drop("claim-1")
    assert c.orphans([b"m1", b"m2"]) == [b"m1"]


def test_the_epoch_changes_once() -> None:
    c = core()
    assert c.epoch_changed("e1")
    assert not c.epoch_changed("e1")
    assert c.epoch_changed("e2")
