"""Claiming: the runner takes the jobs it moved out of Redis in SQL before running them.

Whole fetched batches are claimed; batches that wait while a claim statement is in flight
go together in the next one (a slow database then sees fewer, larger statements instead
of a queue of small ones). A small batch (an idle runner woken by one job) is claimed
*open*: the jobs start once the claim statement has run, while its commit is flushed
(see ``JobStore.claim_open``); nothing is recorded for them before that commit is durable.
A claim lost keeps the message delayed until SQL says the job may run, or drops it when
the job cannot run any more (never a job that is not finished).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .._decisions import decide_claim_loss
from .._dispatch import Routes, route_later
from .._errors import BackendError
from .._ids import new_token
from .._message import Message
from .._store.batcher import Batcher
from .._store.values import Claim, Commit, fences

if TYPE_CHECKING:
    from .._backend import Backend
    from .core import CoreView, RunnerStats

log = logging.getLogger("aqueue.runner")

OPEN_AT_MOST = 4
"""Batches up to this size are claimed open: latency matters there. Larger ones (a
backlog) take one autocommit statement, the fewest round trips and statements per job."""


Confirmation = Literal["durable", "elsewhere", "unknown"]
"""What became of an open claim: ``durable`` (committed, or taken again under the same
token after its commit failed), ``elsewhere`` (another runner holds the job now, or it can
no longer run: this run's outcome would be refused), ``unknown`` (SQL stayed out of reach
until the local deadline of a runner that is stopping)."""


@dataclass
class Claimed:
    msg: Message
    token: str
    won: bool
    commit: asyncio.Future[set[str]] | None = None
    """An open claim's confirmation while it may still be in flight: the ids whose claim
    is durable once it is done."""
    sent_at: float = 0.0
    """``time.monotonic()`` when the claim statement was sent: its lease runs from here."""


def _retrieve(fut: asyncio.Future[set[str]]) -> None:
    if not fut.cancelled():
        fut.exception()  # awaited by the jobs; read here so no failure goes unretrieved


class Claimer:
    """Claims for one runner: ``runner_id`` owns the claims, for ``lease`` seconds of the
    SQL server's ``clock``; ``state`` says whether the runner is stopping and whether a
    claim's lease may have run out."""

    def __init__(
        self,
        be: Backend,
        state: CoreView,
        *,
        runner_id: str,
        lease: float,
        clock: Callable[[], int],
        stats: RunnerStats,
        batch: int,
        lanes: int,
    ) -> None:
        self._be = be
        self._state = state
        self._runner_id = runner_id
        self._lease = lease
        self._clock = clock
        self._stats = stats
        self._batcher: Batcher[list[Message], list[Claimed]] = Batcher(
            "claim", self._flush, max_items=batch, size_of=len, max_bytes=batch, parallel=lanes
        )
        self.confirming: set[tuple[str, str]] = set()
        """(job id, token) of open claims not yet known durable: SQL may not show them as
        this runner's yet (or again), so the heartbeat does not take a failed renewal of
        theirs for a lost lease."""
        self._confirmations: set[asyncio.Future[set[str]]] = set()

    async def close(self) -> None:
        """Flush pending claims and wait for every open claim's confirmation, so that
        what SQL holds under this runner is settled before a shutdown puts it back."""
        await self._batcher.close()
        if self._confirmations:
            await asyncio.wait(set(self._confirmations))

    async def claim(self, msgs: list[Message]) -> list[Claimed]:
        """Claim one fetched batch (merged with others waiting); retried while the
        database is unreachable, unless the runner is stopping (the messages then stay in
        the working list and are requeued at exit)."""
        delay = 0.05
        while True:
            try:
                return await self._batcher.submit(msgs)
            except BackendError as exc:
                if self._state.stopping:
                    return []
                log.warning("claim failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def confirmed(self, c: Claimed) -> Confirmation:
        """Wait until ``c``'s claim is settled (see :data:`Confirmation`)."""
        if c.commit is None:
            return "durable"
        try:
            durable = await asyncio.shield(c.commit)
        except BackendError:
            return "unknown"
        return "durable" if c.msg.id in durable else "elsewhere"

    async def _confirm(
        self, commit: Commit, msgs: Sequence[Message], request: Claim, sent: float
    ) -> set[str]:
        """Commit an open claim. If the commit fails (a connection lost in an outage, a
        server restart), SQL may or may not have it: take the claim again under the same
        token, retried until the local deadline, so a handler that already started on it
        gets its outcome recorded once SQL is back in time. Returns the ids held."""
        ids = {m.id for m in msgs}
        keys = {(i, request.token) for i in ids}
        self.confirming |= keys
        try:
            try:
                await commit()
                return ids
            except BackendError as exc:
                first = exc
            log.warning(
                "claim of job(s) %s was not committed (%s): claiming again",
                ", ".join(sorted(ids)),
                first,
            )
            return await self._claim_again(request, ids, sent)
        finally:
            self.confirming -= keys

    async def _claim_again(self, request: Claim, ids: set[str], sent: float) -> set[str]:
        """Retried until SQL answers, past the local deadline too: the messages stay in
        this runner's working list meanwhile, and a job taken by another runner since is
        refused here (this run's outcome with it), so retaking late is as safe as on
        time, and a handler that ran gets its outcome recorded once SQL is back. Only a
        runner that is stopping gives up at the deadline: the claim is then unknown and
        the messages go back."""
        delay = 0.02
        late = False
        while True:
            if self._state.claim_expired(sent, time.monotonic()):
                if self._state.stopping:
                    log.error(
                        "job(s) %s: SQL unreachable until the local deadline and the runner "
                        "is stopping, claim unknown; their outcome is not recorded here "
                        "(they run again elsewhere)",
                        ", ".join(sorted(ids)),
                    )
                    raise BackendError("claim outcome unknown past the local deadline")
                if not late:
                    late = True
                    log.error(
                        "job(s) %s: SQL unreachable until the local deadline; still claiming "
                        "them again (handlers still running are cancelled meanwhile)",
                        ", ".join(sorted(ids)),
                    )
            now = self._clock()
            until = now + int(self._lease * 1e6)
            again = Claim(request.items, self._runner_id, request.token, until, now)
            try:
                held, retaken = await self._be.store.claim_again(again)
            except BackendError as exc:
                log.warning("claiming again failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if held:
                log.info("claim of job(s) %s had committed after all", ", ".join(sorted(held)))
            if retaken:
                log.warning(
                    "claim of job(s) %s was never committed: claimed again",
                    ", ".join(sorted(retaken)),
                )
            for job_id in ids - held - retaken:
                log.warning(
                    "job %s was claimed elsewhere while its claim here was not committed",
                    job_id,
                )
            return held | retaken

    async def _flush(self, batches: Sequence[list[Message]]) -> list[list[Claimed] | BaseException]:
        claimed = await self._claim_all([m for b in batches for m in b])
        out: list[list[Claimed] | BaseException] = []
        i = 0
        for b in batches:
            out.append(claimed[i : i + len(b)])
            i += len(b)
        return out

    async def _claim_all(self, msgs: Sequence[Message]) -> list[Claimed]:
        store, runner_id = self._be.store, self._runner_id
        token = new_token()
        now = self._clock()
        items = [(m.id, m.stalls, m.attempts) for m in msgs]
        request = Claim(items, runner_id, token, now + int(self._lease * 1e6), now)
        sent = time.monotonic()
        commit: asyncio.Future[set[str]] | None = None
        if len(msgs) <= OPEN_AT_MOST:
            won, pending = await store.claim_open(request)
            if pending is not None:
                mine = [m for m in msgs if m.id in won]
                held = [(m.id, m.stalls, m.attempts) for m in mine]
                req = Claim(held, runner_id, token, request.leased_until, now)
                commit = asyncio.ensure_future(self._confirm(pending, mine, req, sent))
                commit.add_done_callback(_retrieve)
                self._confirmations.add(commit)
                commit.add_done_callback(self._confirmations.discard)
        else:
            won = await store.claim(request)
        out: list[Claimed] = []
        fenced = fences(items)
        seen: set[str] = set()
        lost: list[Message] = []
        for m in msgs:
            # The copy the claim was fenced by runs (a stale twin in the batch does not).
            ok = m.id in won and m.id not in seen and fenced[m.id] == (m.stalls, m.attempts)
            if ok:
                seen.add(m.id)
            out.append(Claimed(m, token, ok, commit if ok else None, sent))
            if not ok:
                lost.append(m)
        if lost:
            await self._handle_losses(lost, won, now)
        return out

    async def _handle_losses(self, lost: Sequence[Message], won: set[str], now: int) -> None:
        """A claim lost: drop the message when the job cannot run any more; otherwise keep
        it delayed until SQL says it may run (never drop a job that is not finished)."""
        be = self._be
        self._stats.claims_lost += len(lost)
        states = await be.store.claim_states([m.id for m in lost if m.id not in won])
        remove: list[bytes] = []
        later = Routes()
        for m in lost:
            remove.append(m.raw)
            if m.id in won:
                continue  # a duplicate of a message we are running: ours will settle it
            st = states.get(m.id)
            decision = decide_claim_loss(
                status=st.status if st else None,
                run_at=st.run_at if st else 0,
                leased_until=st.leased_until if st else None,
                now=now,
                stalls=st.stalls if st else 0,
                message_stalls=m.stalls,
                attempts=st.attempts if st else 0,
                message_attempts=m.attempts,
            )
            if decision.action == "delay" and decision.until is not None:
                route_later(later, m.raw, decision.until)
        await be.dispatcher.settle(self._runner_id, remove, later)
