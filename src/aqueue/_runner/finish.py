"""Recording outcomes: the finish side of the runner.

A job's outcome is compared-and-set in SQL on its lease token, batched with the outcomes
of other jobs (one statement per batch); only then are the messages removed from the
runner's working list, follow-up messages (retries) pushed and waiters on results told
(a hint: they also poll), in one Lua call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import _observe
from .._dispatch import Routes, route_follow_up
from .._errors import BackendError
from .._message import Message
from .._models import JobRecord, JobStatus
from .._store.batcher import Batcher
from .._store.values import Finish
from .._workflow import PARENT
from .execute import Outcome
from .faults import crash_point

if TYPE_CHECKING:
    from .._backend import Backend
    from .core import CoreView, RunnerStats

log = logging.getLogger("aqueue.runner")


@dataclass
class _Settled:
    finish: Finish
    raw: bytes
    follow_up: bytes | None = None
    priority: int = 0
    """The follow-up's priority, which decides where it is sent."""
    at: int | None = None
    """The time of the first statement that carried this outcome: a retry writes the same
    ``updated_at``, so that when the first one did commit (its reply lost) the retry
    recognises the row as its own write, not as a late finish refused."""


class Recorder:
    """Outcomes of the jobs ``runner_id`` ran, recorded at the SQL server's ``clock``;
    ``state`` says whether the runner is stopping, whether its leases may have run out,
    and the Redis epoch it last saw."""

    def __init__(
        self,
        be: Backend,
        state: CoreView,
        *,
        runner_id: str,
        clock: Callable[[], int],
        stats: RunnerStats,
        batch: int,
        lanes: int,
        linger: float = 0.0,
    ) -> None:
        self._be = be
        self._state = state
        self._runner_id = runner_id
        self._clock = clock
        self._stats = stats
        self.recording: set[tuple[str, str]] = set()
        """(job id, token) of outcomes on their way to SQL: the heartbeat leaves them be."""
        self._batcher: Batcher[_Settled, bool] = Batcher(
            "finish", self._flush, max_items=batch, parallel=lanes, linger=linger
        )

    async def close(self) -> None:
        """Flush every pending outcome, then stop."""
        await self._batcher.close()

    async def record(self, msg: Message, token: str, outcome: Outcome) -> bool:
        """Record one job's outcome (batched with others); ``False`` when its lease token
        was revoked or the lease ran out before SQL could be reached."""
        assert outcome.status is not None
        follow = msg.follow_up(outcome.run_at) if outcome.status is JobStatus.TODO else None
        item = _Settled(
            Finish(
                msg.id,
                token,
                outcome.status,
                outcome.result,
                outcome.error,
                outcome.run_at,
                PARENT in msg.options,
            ),
            msg.raw,
            follow,
            msg.priority,
        )
        self.recording.add((msg.id, token))
        try:
            return await self._submit(item, msg)
        finally:
            self.recording.discard((msg.id, token))

    async def _submit(self, item: _Settled, msg: Message) -> bool:
        """Submit until SQL answers. Any error, the store's own or one it did not map (a
        defect, a driver error not seen before), is retried: giving up would leave the
        job ``running`` in SQL with its handler done, to be reclaimed and run again. Past
        the local deadline too: the finish is fenced by the lease token, so a late one is
        refused if the job was taken since and recorded if it was not (SQL back before
        any reclaimer got to it). Only a runner that is stopping gives up, once its
        deadline passed; the job is then left to the reclaimer."""
        delay = 0.05
        late = False
        while True:
            try:
                return await self._batcher.submit(item)
            except Exception as exc:
                if not isinstance(exc, BackendError):
                    log.error("recording job %s raised %r", msg.id, exc, exc_info=exc)
                if self._state.deadline_passed(time.monotonic()):
                    if self._state.stopping:
                        log.error(
                            "could not record job %s (%s) before the lease ran out and the "
                            "runner is stopping; it will run again elsewhere",
                            msg.id,
                            exc,
                        )
                        return False
                    if not late:
                        late = True
                        log.error(
                            "could not record job %s (%s) before the local deadline; still "
                            "trying: recorded if SQL is back before its lease is taken, "
                            "else refused and the job runs again elsewhere",
                            msg.id,
                            exc,
                        )
                else:
                    log.warning("recording job %s failed (%s); retrying", msg.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _flush(self, items: Sequence[_Settled]) -> list[bool | BaseException]:
        be, stats = self._be, self._stats
        now = self._clock()
        for i in items:
            if i.at is None:
                i.at = now
        accepted: set[str] = set()
        released: list[tuple[int, list[JobRecord]]] = []
        for at in sorted({i.at for i in items if i.at is not None}):
            same = [i.finish for i in items if i.at == at]
            written, children = await be.store.finish_release(same, at)
            accepted |= written
            if children:
                released.append((at, children))
        crash_point("after_commit")
        follow_ups = Routes()
        out: list[bool | BaseException] = []
        for i in items:
            ok = i.finish.id in accepted
            out.append(ok)
            st = i.finish.status
            if not ok:
                stats.finishes_rejected += 1
                log.warning(
                    "late finish of job %s rejected: its lease token was revoked",
                    i.finish.id,
                    extra={"job_id": i.finish.id, "runner": self._runner_id},
                )
                observer = _observe.active
                if observer is not None:
                    observer.finish_rejected(be.queue_name)
                continue
            if st is JobStatus.DONE:
                stats.done += 1
            elif st is JobStatus.FAILED:
                stats.failed += 1
            elif st is JobStatus.TODO and i.follow_up is not None:
                stats.retried += 1
                route_follow_up(follow_ups, i.follow_up, i.priority, i.finish.run_at or now, now)
        final = [
            i.finish.id
            for i, ok in zip(items, out, strict=True)
            if ok is True and i.finish.status is not JobStatus.TODO
        ]
        # SQL has recorded the outcomes: from here on only Redis is left to do, and it is
        # retried in place (never by re-submitting the finish, which SQL would now refuse).
        # Waiters on results are told in the same call (a hint: they also poll).
        await self._settle_retrying([i.raw for i in items], follow_ups, final)
        retried = [
            i.finish.id
            for i, ok in zip(items, out, strict=True)
            if ok is True and i.finish.status is JobStatus.TODO
        ]
        # Their follow-up messages are in Redis: the sweeper can skip them. The epoch is
        # the one the runner saw before the push: had Redis lost its data since, the
        # mark names the old dataset and the sweeper sends a second copy (never none).
        epoch = self._state.epoch
        if retried and epoch is not None:
            be.marker.add(retried, now, epoch)
        for at, children in released:
            await self._dispatch_released(children, at)
        return out

    async def _dispatch_released(self, children: list[JobRecord], at: int) -> None:
        """Send the jobs this batch's finishes released (``todo`` in SQL since the same
        commit, written at ``at``) and mark them; if this push is lost, the sweeper sends
        them (they are not marked)."""
        be = self._be
        try:
            epoch = await be.dispatcher.rows(children, self._clock())
        except BackendError as exc:
            log.warning(
                "released %d job(s) not dispatched (%s); the sweeper will", len(children), exc
            )
            return
        if epoch is not None:
            be.marker.add([r.id for r in children], at, epoch)

    async def _settle_retrying(
        self,
        remove: list[bytes],
        follow_ups: Routes,
        finished: list[str],
    ) -> None:
        delay = 0.05
        while True:
            try:
                await self._be.dispatcher.settle(self._runner_id, remove, follow_ups, finished)
                return
            except BackendError as exc:
                if self._state.stopping:
                    # Retries were committed with dispatched_at NULL: the sweeper sends
                    # them; what is left in the working list is requeued at exit.
                    log.warning("could not settle %d message(s) in Redis: %s", len(remove), exc)
                    return
                log.warning("settling in Redis failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
