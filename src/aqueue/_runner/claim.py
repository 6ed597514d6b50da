"""Claiming: the runner takes the jobs it moved out of Redis in SQL before running them.

Whole fetched batches are claimed; batches that wait while a claim statement is in flight
go together in the next one (a slow database then sees fewer, larger statements instead
of a queue of small ones). A small batch (an idle runner woken by one job) is claimed
*open*: the jobs start once the claim statement has run, while its commit is flushed
(see ``_store/claims.py``); nothing is recorded for them before that commit is durable.
A claim lost keeps the message delayed until SQL says the job may run, or drops it when
the job cannot run any more (never a job that is not finished).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._decisions import decide_claim_loss
from .._errors import BackendError
from .._models import Message, new_token
from .._store import claims
from .._store.batcher import Batcher

if TYPE_CHECKING:
    from .._queue import _Backend
    from .runner import Runner

log = logging.getLogger("aqueue.runner")

OPEN_AT_MOST = 4
"""Batches up to this size are claimed open: latency matters there. Larger ones (a
backlog) take one autocommit statement, the fewest round trips and statements per job."""


@dataclass
class Claimed:
    msg: Message
    token: str
    won: bool
    commit: asyncio.Future[None] | None = None
    """The claim's commit, while it may still be in flight (an open claim)."""


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # awaited by the jobs; read here so no failure goes unretrieved


class Claimer:
    def __init__(self, runner: Runner, be: _Backend, *, batch: int, lanes: int) -> None:
        self._r = runner
        self._be = be
        self._batcher: Batcher[list[Message], list[Claimed]] = Batcher(
            "claim", self._flush, max_items=batch, size_of=len, max_bytes=batch, parallel=lanes
        )

    async def close(self) -> None:
        await self._batcher.close()

    async def claim(self, msgs: list[Message]) -> list[Claimed]:
        """Claim one fetched batch (merged with others waiting); retried while the
        database is unreachable, unless the runner is stopping (the messages then stay in
        the working list and are requeued at exit)."""
        delay = 0.05
        while True:
            try:
                return await self._batcher.submit(msgs)
            except BackendError as exc:
                if self._r._stopping:
                    return []
                log.warning("claim failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def confirmed(self, c: Claimed) -> None:
        """Return once ``c``'s claim is durable. If its commit failed (the transaction
        rolled back, or its outcome is unknown), take the claim again under the same
        token; if another runner won the job meanwhile, whatever this run records is
        rejected by the token fence."""
        if c.commit is None:
            return
        try:
            await asyncio.shield(c.commit)
            return
        except BackendError as exc:
            log.warning("claim of job %s not committed (%s); claiming it again", c.msg.id, exc)
        r = self._r
        now, lease = r.clock(), int(r.config.lease * 1e6)
        try:
            m = c.msg
            again = claims.Claim([(m.id, m.stalls, m.attempts)], r.id, c.token, now + lease, now)
            won = await claims.claim(self._be.store, again, again=True)
        except BackendError as exc:
            log.warning("claiming job %s again failed (%s)", c.msg.id, exc)
            return
        if not won:
            log.warning("job %s was claimed elsewhere while its claim here rolled back", c.msg.id)

    async def _flush(self, batches: Sequence[list[Message]]) -> list[list[Claimed] | BaseException]:
        claimed = await self._claim_all([m for b in batches for m in b])
        out: list[list[Claimed] | BaseException] = []
        i = 0
        for b in batches:
            out.append(claimed[i : i + len(b)])
            i += len(b)
        return out

    async def _claim_all(self, msgs: Sequence[Message]) -> list[Claimed]:
        r, cfg, store = self._r, self._r.config, self._be.store
        token = new_token()
        now = r.clock()
        items = [(m.id, m.stalls, m.attempts) for m in msgs]
        request = claims.Claim(items, r.id, token, now + int(cfg.lease * 1e6), now)
        commit: asyncio.Future[None] | None = None
        if len(msgs) <= OPEN_AT_MOST:
            won, pending = await claims.claim_open(store, request)
            if pending is not None:
                commit = asyncio.ensure_future(pending())
                commit.add_done_callback(_retrieve)
        else:
            won = await claims.claim(store, request)
        out: list[Claimed] = []
        fenced = claims.fences(items)
        seen: set[str] = set()
        lost: list[Message] = []
        for m in msgs:
            # The copy the claim was fenced by runs (a stale twin in the batch does not).
            ok = m.id in won and m.id not in seen and fenced[m.id] == (m.stalls, m.attempts)
            if ok:
                seen.add(m.id)
            out.append(Claimed(m, token, ok, commit if ok else None))
            if not ok:
                lost.append(m)
        if lost:
            await self._handle_losses(lost, won, now)
        return out

    async def _handle_losses(self, lost: Sequence[Message], won: set[str], now: int) -> None:
        """A claim lost: drop the message when the job cannot run any more; otherwise keep
        it delayed until SQL says it may run (never drop a job that is not finished)."""
        be = self._be
        self._r.stats.claims_lost += len(lost)
        states = await claims.claim_states(be.store, [m.id for m in lost if m.id not in won])
        remove: list[bytes] = []
        delayed: list[tuple[int, bytes]] = []
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
                delayed.append((decision.until // 1000 + 1, m.raw))
        await be.broker.settle(self._r.id, remove, delayed=delayed)
