"""The runner's state and decisions, without I/O (sans-I/O core).

What a runner must remember to keep its promises (free slots, the jobs running here
under which lease token, the runs it revoked itself, the messages each task holds, the
last lease renewal SQL acknowledged, the Redis epoch, whether it is stopping) and what
it decides from them on each event. Times are passed in (``now``: ``time.monotonic()``
readings), so every edge case is a plain function call in a unit test; the asyncio shell
(``runner.Runner``) carries the returned actions out: cancel these handlers, give back
these slots, put these messages back.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .._decisions import local_deadline

H = TypeVar("H")  # the shell's handle on a running handler (an asyncio.Task)
T = TypeVar("T", bound=Hashable)  # the shell's handle on a task holding messages


@dataclass
class RunnerStats:
    executed: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    claims_lost: int = 0
    finishes_rejected: int = 0
    malformed: int = 0
    released: int = 0


class CoreView(Protocol):
    """What the claimer and the recorder read of the runner's state, and never change
    (:class:`RunnerCore` is one): they take this instead of the runner."""

    @property
    def stopping(self) -> bool: ...

    @property
    def epoch(self) -> str | None: ...

    def deadline_passed(self, now: float) -> bool: ...

    def claim_expired(self, sent_at: float, now: float) -> bool: ...


class RunnerCore(Generic[H, T]):
    """State of one runner; every method is synchronous and reads no clock."""

    __slots__ = (
        "claimed_at",
        "epoch",
        "free",
        "inflight",
        "last_ack",
        "lease",
        "margin",
        "renewed",
        "revoked",
        "running",
        "settling",
        "slots",
        "stopping",
    )

    def __init__(
        self, *, concurrency: int, prefetch: int, lease: float, margin: float, now: float
    ) -> None:
        self.slots = concurrency + prefetch
        self.free = self.slots
        self.lease = lease
        self.margin = margin
        self.last_ack = now
        # The runs the last acknowledged renewal named: it vouches for their leases only
        # (a run registered after that renewal's items were taken holds its claim's).
        self.renewed: frozenset[tuple[str, str]] = frozenset()
        self.epoch: str | None = None
        self.stopping = False
        # job id -> (lease token, handler): the leases this runner renews.
        self.running: dict[str, tuple[str, H]] = {}
        # Runs this runner cancelled itself (lease revoked or local deadline passed):
        # their cancellation is not a shutdown and not the handler's own.
        self.revoked: set[tuple[str, str]] = set()
        # Runs whose handler (and its hooks) ended: their outcome is on its way to SQL,
        # where it is fenced by the lease token. Nothing of theirs is left to stop, so
        # neither a revoked lease nor the local deadline cancels them: a late outcome is
        # refused by SQL if the job was taken since, and recorded if it was not.
        self.settling: set[tuple[str, str]] = set()
        # (job id, token) -> when its claim was sent: the claim set its lease, so the
        # local deadline of a run claimed after the last acknowledged renewal counts
        # from there.
        self.claimed_at: dict[tuple[str, str], float] = {}
        # task -> the raw messages it holds in this runner's working list.
        self.inflight: dict[T, list[bytes]] = {}

    # -- slots -----------------------------------------------------------------------

    def take_slots(self, n: int) -> None:
        """``n`` messages were moved into the working list: each holds a slot."""
        self.free -= n

    def release_slots(self, n: int) -> None:
        self.free += n

    def fetch_size(self, batch: int, *, busy: bool) -> int:
        """How many messages to fetch now; 0 means wait for slots. With work in flight
        the runner waits until a quarter of the slots are free, so moves and claims go in
        batches; an idle runner fetches at once."""
        low_water = max(1, min(batch, self.slots // 4))
        if self.free <= 0 or (self.free < low_water and busy):
            return 0
        return min(self.free, batch)

    def all_free(self, *, busy: bool) -> bool:
        return self.free >= self.slots and not busy

    # -- messages held by tasks --------------------------------------------------------

    def hold(self, task: T, raws: list[bytes]) -> None:
        self.inflight[task] = raws

    def drop(self, task: T) -> None:
        self.inflight.pop(task, None)

    def orphans(self, working: Iterable[bytes]) -> list[bytes]:
        """Messages in this runner's working list that no task of it holds (a move whose
        reply was lost): these go back to the ready list."""
        known = collections.Counter(raw for raws in self.inflight.values() for raw in raws)
        out: list[bytes] = []
        for raw in working:
            if known[raw] > 0:
                known[raw] -= 1
            else:
                out.append(raw)
        return out

    # -- leases ------------------------------------------------------------------------

    def deadline_passed(self, now: float) -> bool:
        """No renewal acknowledged within the lease (minus the margin): the leases of
        this runner may be gone."""
        return now > local_deadline(self.last_ack, self.lease, self.margin)

    def until_deadline(self, now: float) -> float:
        """Seconds left before the local deadline (negative once it passed)."""
        return local_deadline(self.last_ack, self.lease, self.margin) - now

    def claim_expired(self, sent_at: float, now: float) -> bool:
        """Past the local deadline counted from the later of the last acknowledged
        renewal and a claim sent at ``sent_at`` (the claim itself set the lease)."""
        return now > local_deadline(max(self.last_ack, sent_at), self.lease, self.margin)

    def may_start(self, sent_at: float, now: float, run: tuple[str, str] | None = None) -> bool:
        """A handler starts only while not stopping and its lease surely holds: before the
        local deadline counted from its claim (sent at ``sent_at``), or from the last
        acknowledged renewal if that renewal named this ``run`` (job id, token). A run
        claimed just before a pause and registered only after it (the claim's reply read
        on resuming) is not in the renewal sent on resuming: that renewal says nothing of
        its lease, which may have been reclaimed during the pause."""
        if self.stopping:
            return False
        since = max(sent_at, self.last_ack) if run in self.renewed else sent_at
        return now <= local_deadline(since, self.lease, self.margin)

    def started(self, job_id: str, token: str, handler: H, claimed_at: float | None = None) -> None:
        """A run registered: its lease is renewed from now on; ``claimed_at`` is when its
        claim was sent (``None``: its lease counts from the last renewal only)."""
        self.running[job_id] = (token, handler)
        if claimed_at is not None:
            self.claimed_at[(job_id, token)] = claimed_at

    def handler_ended(self, job_id: str, token: str) -> None:
        """This run's handler and its hooks ended: from now on only its outcome is
        recorded (see :attr:`settling`)."""
        self.settling.add((job_id, token))

    def forget(self, job_id: str, token: str) -> None:
        """Stop renewing this run's lease (only this run's: the job may have been claimed
        again since under another token)."""
        self.revoked.discard((job_id, token))
        self.settling.discard((job_id, token))
        self.claimed_at.pop((job_id, token), None)
        entry = self.running.get(job_id)
        if entry is not None and entry[0] == token:
            del self.running[job_id]

    def renewal_items(self) -> list[tuple[str, str]]:
        return [(job_id, token) for job_id, (token, _) in self.running.items()]

    def acknowledged(
        self, sent: float, items: Iterable[tuple[str, str]] = (), lost: Collection[str] = ()
    ) -> None:
        """SQL acknowledged a renewal of ``items`` sent at ``sent``, which did not renew
        the jobs ``lost`` (their leases are someone else's now): it vouches for the rest
        only. A claimed run waiting for a slot is renewed too, and may start as soon as
        a slot frees, before the lost ones are cancelled."""
        self.last_ack = sent
        self.renewed = frozenset(it for it in items if it[0] not in lost)

    def on_lost(
        self,
        sent: list[tuple[str, str]],
        lost: Iterable[str],
        *,
        recording: set[tuple[str, str]],
        confirming: set[tuple[str, str]],
    ) -> list[tuple[str, H]]:
        """SQL answered a renewal of ``sent`` with the jobs whose lease is ``lost``: the
        handlers to cancel. A run whose handler ended or whose outcome is being recorded,
        or whose claim is being confirmed, is left alone; so is a job claimed again since
        under another token."""
        tokens = dict(sent)
        cancel: list[tuple[str, H]] = []
        for job_id in lost:
            entry = self.running.get(job_id)
            if entry is None:
                continue
            key = (job_id, entry[0])
            if key in recording or key in confirming or key in self.settling:
                continue
            if entry[0] == tokens.get(job_id):
                self.revoked.add(key)
                cancel.append((job_id, entry[1]))
        return cancel

    def revoke_all(self, now: float) -> list[H]:
        """Past the local deadline: every handler still running is cancelled (they will
        run again elsewhere); nothing before it. A run claimed after the last
        acknowledged renewal counts its deadline from its claim (which set its lease);
        runs whose handler ended go on recording their outcome (see :attr:`settling`)."""
        if not self.deadline_passed(now):
            return []
        cancel: list[H] = []
        for job_id, (token, handler) in list(self.running.items()):
            key = (job_id, token)
            if key in self.settling:
                continue
            claimed_at = self.claimed_at.get(key)
            if claimed_at is not None and not self.claim_expired(claimed_at, now):
                continue
            self.revoked.add((job_id, token))
            cancel.append(handler)
        return cancel

    def revoked_by_us(self, job_id: str, token: str) -> bool:
        """A cancelled handler: did this runner revoke it (and not a shutdown)? If so the
        revocation is consumed and the run forgotten."""
        if (job_id, token) not in self.revoked or self.stopping:
            return False
        self.revoked.discard((job_id, token))
        self.forget(job_id, token)
        return True

    def epoch_changed(self, epoch: str) -> bool:
        """Redis answered with ``epoch``: True (once) when it lost its data since."""
        if epoch == self.epoch:
            return False
        self.epoch = epoch
        return True

    def stop(self) -> None:
        self.stopping = True
