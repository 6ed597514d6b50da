"""Pure decisions: retry delays, the outcome of a failed attempt, why a claim lost.

No I/O and no clock reads: ``now`` (integer microseconds) is always passed in, so these
are tested directly with made-up times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from ._models import JobStatus


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff (``base * factor**(attempt-1)``, capped) with jitter on the
    upper ``jitter`` fraction — or, with ``intervals``, an explicit sequence of delays
    (e.g. ``[5, 8, 9]``; the last one repeats)."""

    base: float = 1.0
    """Seconds before the first retry."""
    factor: float = 2.0
    """Each further retry waits this many times longer."""
    cap: float = 3600.0
    """The longest delay, in seconds."""
    jitter: float = 0.5
    """The randomised fraction of each delay (its upper part), so that jobs failing
    together do not retry together; 0 for exact delays."""
    intervals: tuple[float, ...] | None = None
    """Explicit delays instead (see :meth:`sequence`); the last one repeats."""

    @classmethod
    def sequence(cls, *intervals: float) -> Backoff:
        """Retry after exactly these delays (seconds), no jitter: ``sequence(5, 8, 9)``."""
        if not intervals or any(i < 0 for i in intervals):
            raise ValueError("intervals must be one or more delays >= 0")
        return cls(jitter=0.0, intervals=tuple(float(i) for i in intervals))

    def delay(self, attempt: int, rnd: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if self.intervals:
            raw = self.intervals[min(max(attempt, 1), len(self.intervals)) - 1]
        else:
            raw = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        if self.jitter <= 0:
            return raw
        r = (rnd or random).random()
        return raw * (1 - self.jitter) + raw * self.jitter * r


@dataclass(frozen=True, slots=True)
class FailureDecision:
    status: Literal["todo", "failed"]
    run_at: int | None


def decide_failure(
    *,
    attempt: int,
    max_attempts: int,
    now: int,
    retryable: bool,
    backoff: Backoff,
    requested_delay: float | None = None,
    rnd: random.Random | None = None,
) -> FailureDecision:
    """What happens after attempt number ``attempt`` (1-based) failed."""
    if not retryable or attempt >= max_attempts:
        return FailureDecision("failed", None)
    delay = requested_delay if requested_delay is not None else backoff.delay(attempt, rnd)
    return FailureDecision("todo", now + int(max(0.0, delay) * 1_000_000))


@dataclass(frozen=True, slots=True)
class ClaimLoss:
    """What to do with a message whose claim lost."""

    action: Literal["drop", "delay"]
    until: int | None = None


def decide_claim_loss(
    *,
    status: JobStatus | None,
    run_at: int,
    leased_until: int | None,
    now: int,
    stalls: int = 0,
    message_stalls: int = 0,
    attempts: int = 0,
    message_attempts: int = 0,
) -> ClaimLoss:
    """A claim lost. Drop the message when this copy cannot be the one that runs the job:
    the job is finished, or running (if its runner dies, the reclaimer decides in SQL and
    sends a fresh copy), or was written since this copy was made (stall or attempt counts
    differ: a reclaim, retry or repush happened, and whoever wrote it sent a fresh copy,
    or left ``dispatched_at`` unset for the sweeper). Keep it, delayed until SQL's
    ``run_at``, when the job is merely not due yet: never drop the only copy of a job that
    can still run."""
    if status is None or status.is_final or status is JobStatus.RUNNING:
        return ClaimLoss("drop")
    if stalls != message_stalls or attempts != message_attempts:
        return ClaimLoss("drop")
    return ClaimLoss("delay", max(run_at, now))


def local_deadline(last_ack_monotonic: float, lease_s: float, margin_s: float) -> float:
    """Monotonic time after which a runner must assume its leases are gone."""
    return last_ack_monotonic + lease_s - margin_s


def renewal_time_limit(*, until_deadline: float, heartbeat: float, margin: float) -> float:
    """How long a lease renewal waits for SQL's answer (seconds) when the local deadline
    is ``until_deadline`` away (negative: passed). Never past the deadline by more than a
    grace of half the heartbeat (at most half the margin): a renewal that cannot be
    acknowledged by then gives up, and the runner cancels its handlers on its own clock.
    A runner back from a pause past its deadline gets only that grace, which is less
    than the hold of the other runners' reclaimers after the same pause (a heartbeat:
    see ``reclaim_hold``), so its handlers stop before anyone can reclaim their jobs;
    and less than the margin, so without a pause they stop before the lease in SQL ends."""
    grace = min(heartbeat, margin) / 2
    return min(heartbeat, max(grace, until_deadline))


def paused_for(*, asked: float, slept: float, wall_slept: float) -> float:
    """How long this process was paused (seconds) during a sleep of ``asked`` seconds
    that took ``slept`` by the monotonic clock and ``wall_slept`` by the wall clock: the
    sleep's overrun (the process or its event loop was stopped: SIGSTOP, a blocked loop),
    or the wall clock running ahead of the monotonic one (the machine was suspended: a VM
    snapshot or migration, a laptop's sleep; the monotonic clock stops meanwhile)."""
    return max(0.0, slept - asked, wall_slept - slept)


def reclaim_hold(*, paused: float, heartbeat: float) -> float:
    """Seconds a reclaimer that was itself paused for ``paused`` seconds waits before it
    takes anything. Whatever paused it may have paused the other runners too (a whole
    machine frozen): their leases look expired only because they could not renew them
    yet. One heartbeat period lets every live runner renew first. A lag under half a
    heartbeat is a busy loop, not a pause: no lease can have run out because of it."""
    return heartbeat if paused > heartbeat / 2 else 0.0


ZombieDestination = Literal["todo", "failed", "done"]


@dataclass(frozen=True, slots=True)
class ReclaimDecision:
    status: JobStatus
    reason: str | None


def decide_reclaim(
    *, stalls: int, max_stalls: int, destination: ZombieDestination, owner: str | None
) -> ReclaimDecision:
    """Reclaim a job whose runner stopped renewing its lease (it expired while the job
    was ``running``): one more stall; ``stalls`` is the count before this one. At the
    stall limit it fails ("runner died"), so a poison job cannot kill runners forever;
    otherwise it goes to the configured (zombie) destination."""
    count = stalls + 1
    if count >= max_stalls:
        return ReclaimDecision(
            JobStatus.FAILED,
            f"runner died: {owner or 'unknown runner'} stopped renewing the "
            f"lease ({count} stall(s), limit {max_stalls})",
        )
    if destination == "todo":
        return ReclaimDecision(JobStatus.TODO, None)
    reason = f"zombie job: lease of {owner or 'unknown runner'} expired; recorded {destination}"
    return ReclaimDecision(JobStatus(destination), reason)


SuspectLane = Literal["alone", "group"]


def suspect_lane(stalls: int, max_stalls: int) -> SuspectLane | None:
    """Where a ``todo`` job that already stalled ``stalls`` times is queued. A job that was
    running when its runner died must not run beside others again: if it is a poison job,
    its neighbours would be charged with its stalls. Stalled once or more it runs in a
    small group on a runner with nothing else in flight; one stall from the limit, alone,
    so only the poison job reaches the limit. ``None``: an ordinary job (the ready lists)."""
    if stalls <= 0:
        return None
    return "alone" if stalls + 1 >= max_stalls else "group"
