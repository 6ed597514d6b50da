"""Running one claimed job: its slot, the start gate (stop, local deadline, a claim
being confirmed), the handler, giving back what did not start, and settling messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

from .. import _observe
from .._context import JobContext, _current
from .._dispatch import Routes, route_give_back, route_later
from .._errors import (
    BackendError,
    CommitError,
    RateLimited,
    SerializationError,
    UnsupportedMessageError,
)
from .._message import Message, decode_message, message_job_id
from .._models import JobStatus
from .._serde import dumps, encode_reason
from .._workflow import FEED
from .admit import TaskLimit, admit, task_limits
from .base import RunnerBase, Slot
from .claim import Claimed
from .execute import Outcome, execute, run_after_hooks
from .faults import crash_point
from .feed import execute_fed

log = logging.getLogger("aqueue.runner")


class JobRunner(RunnerBase):
    """How a claimed job runs, from its slot to its settled messages."""

    _rate_limits: dict[str, TaskLimit] | None = None

    def _limits(self) -> dict[str, TaskLimit]:
        """The queue's rate-limited tasks, read once (tasks register before a runner)."""
        if self._rate_limits is None:
            self._rate_limits = task_limits(self.queue.tasks)
        return self._rate_limits

    def _spawn(self, coro: Coroutine[Any, Any, None], raws: list[bytes]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._jobs.add(task)
        self._inflight[task] = raws

        def done(t: asyncio.Task[None]) -> None:
            self._jobs.discard(t)
            self._inflight.pop(t, None)
            if not self._jobs:
                self._free_changed.set()

        task.add_done_callback(done)

    def _start_batch(self, raws: list[bytes]) -> None:
        """Messages just moved into the working list: one task claims them all (one
        statement), then each won job runs in a task of its own."""
        self.core.free -= len(raws)
        self._spawn(self._claim_batch(raws), raws)

    async def _claim_batch(self, raws: list[bytes]) -> None:
        unused = len(raws)  # slots not handed on to a job task
        try:
            msgs: list[Message] = []
            for raw in raws:
                try:
                    msgs.append(decode_message(raw))
                except SerializationError as exc:
                    await self._malformed(raw, exc)
            limits = self._limits()
            if limits and msgs:  # only then a Redis call: the limiter, before any claim
                assert self._be is not None
                msgs = await admit(self._be, self.id, msgs, limits, self._give_back_raw)
            assert self._claimer is not None
            claimed = await self._claimer.claim(msgs) if msgs else []
            for c in claimed:
                if c.won:
                    self._spawn(self._run_one(c), [c.msg.raw])
                    unused -= 1
        finally:
            if unused:
                self._release_slots(unused)

    async def _run_one(self, claimed: Claimed) -> None:
        slot = Slot(self)
        try:
            await self._run_claimed(claimed, slot)
        finally:
            slot.release()

    async def _malformed(self, raw: bytes, exc: Exception) -> None:
        assert self._be is not None
        if isinstance(exc, UnsupportedMessageError):
            # Written by a newer aqueue (a rolling deploy): leave it for a runner that
            # reads it, and look again later.
            log.warning("message of job %s: %s; leaving it for a newer runner", exc.job_id, exc)
            due = self.clock() // 1000 + int(self.config.lease * 1000)
            await self._be.broker.settle(self.id, [raw], delayed=[(due, raw)])
            return
        self.stats.malformed += 1
        job_id = message_job_id(raw)
        log.error("dropping malformed message (job %s): %s", job_id, exc)
        if job_id is not None:
            await self._be.store.fail_unclaimed(
                job_id, encode_reason("SerializationError", str(exc)), self.clock()
            )
        await self._be.broker.settle(self.id, [raw])

    # -- run & finish ------------------------------------------------------------------

    async def _run_claimed(self, claimed: Claimed, slot: Slot) -> None:
        msg, token = claimed.msg, claimed.token
        task_def = self.queue.tasks.get(msg.task)
        ctx = JobContext(
            job_id=msg.id,
            task=msg.task,
            attempt=msg.attempts + 1,
            max_attempts=msg.max_attempts or (task_def.config.retries + 1 if task_def else 1),
            lease_token=token,
            runner_id=self.id,
            queue=self.queue,
            args=tuple(msg.args),
            kwargs=msg.kwargs,
            state=self.state,
        )
        # This task's lines (give-back, settling, hooks) and the handler's are this job's:
        # the JSON log format reads its fields from here. The task's own context: no reset.
        _current.set(ctx)
        if claimed.commit is not None and self._claimer is not None:
            claimer = self._claimer
            ctx._claim_settled = lambda: claimer.confirmed(claimed)  # for progress writes
        if task_def is not None and not task_def.config.auto_commit:
            ctx.auto_commit = False
            ctx._committer = self._make_committer(claimed)
        current = asyncio.current_task()
        assert current is not None
        self.core.started(msg.id, token, current, claimed_at=claimed.sent_at)
        try:
            try:
                limit = self._task_limit(task_def.config.concurrency if task_def else None, msg)
                outcome: Outcome | None = None
                if limit is None:
                    async with self._handler_gate:
                        if self._may_start(claimed):
                            outcome = await self._execute(ctx, msg)
                else:
                    async with limit, self._handler_gate:
                        if self._may_start(claimed):
                            outcome = await self._execute(ctx, msg)
                if outcome is None:
                    await self._give_back(claimed)
                    return
            except asyncio.CancelledError:
                if self.core.revoked_by_us(msg.id, token):
                    # We cancelled it ourselves (lease revoked, or the local deadline
                    # passed): the job is someone else's now, or the reclaimer's once
                    # the lease runs out. Forget our delivery of it; but if its claim
                    # never became durable, SQL may still hold the job as ``todo`` with
                    # no one to send it again: then the message goes back too.
                    current.uncancel()
                    back = False
                    if claimed.commit is not None and self._claimer is not None:
                        back = await self._claimer.confirmed(claimed) == "unknown"
                    await self._settle_retrying(msg.raw, back=back)
                    return
                raise
            crash_point("after_handler")
            self.stats.executed += 1
            if isinstance(outcome.exc, RateLimited):
                slot.release()
                await self._put_back_limited(claimed, ctx, outcome, outcome.exc)
                return
            if outcome.exc is not None:
                _log_failure(ctx, outcome.status, outcome.exc)
            if outcome.status is None:  # manual commit
                if not ctx.committed:
                    log.warning(
                        "job %s (manual commit) returned without committing: its lease is "
                        "no longer renewed; the reclaimer will handle it",
                        msg.id,
                    )
                return
            await self._after_hooks(ctx, outcome)
            # The handler and its hooks are done: the slot goes to the next job while the
            # outcome is recorded (the lease is renewed until then; shutdown flushes it),
            # and nothing cancels this task any more but a shutdown.
            self.core.handler_ended(msg.id, token)
            slot.release()
            assert self._recorder is not None
            if await self._unconfirmed(claimed):
                return
            await self._recorder.record(msg, token, outcome)
        finally:
            self._forget(msg.id, token)

    def _execute(self, ctx: JobContext, msg: Message) -> Awaitable[Outcome]:
        if FEED in msg.options and self._be is not None:  # a workflow step
            run = execute_fed(self._be.store, self.queue, ctx, msg, self.clock, self._threads)
        else:
            run = execute(self.queue, ctx, msg, self.clock, self._threads)
        observer = _observe.active
        if observer is None:
            return run
        return _observe.observed_run(observer, self.queue.name, msg, self.id, run)

    def _may_start(self, claimed: Claimed) -> bool:
        """A handler starts only while the runner is not stopping and its lease surely
        holds: before the local deadline, counted from the claim itself or a later
        renewal SQL acknowledged for this run (a runner frozen past its lease, e.g. by
        SIGSTOP, wakes with claimed jobs that may have been reclaimed and run elsewhere;
        see ``RunnerCore.may_start``)."""
        if self._stop.is_set():
            return False
        run = (claimed.msg.id, claimed.token)
        return self.core.may_start(claimed.sent_at, time.monotonic(), run)

    async def _give_back(self, claimed: Claimed) -> None:
        """A claimed job that must not start here. When stopping, the shutdown puts it
        back with the others (once every job task has ended). Past the local deadline:
        release its claim in SQL by token (attempt not used up) and return its message
        to the ready list; if the release does not reach SQL, the message's claim fails
        against the running row and the reclaimer sends a fresh copy when the lease ends."""
        if self._stop.is_set():
            return
        assert self._be is not None
        msg, be = claimed.msg, self._be
        log.warning(
            "job %s was claimed but not started before the local deadline (the runner was "
            "paused or SQL unreachable): giving it back",
            msg.id,
        )
        self._forget(msg.id, claimed.token)
        with contextlib.suppress(BackendError):
            if claimed.commit is not None:
                await asyncio.shield(claimed.commit)
        with contextlib.suppress(BackendError):
            await be.store.release_claims([(msg.id, claimed.token)], self.clock())
        self.stats.released += 1
        await self._settle_retrying(msg.raw, back=True)

    async def _give_back_raw(self, raw: bytes) -> None:
        await self._settle_retrying(raw, back=True)

    async def _put_back_limited(
        self, claimed: Claimed, ctx: JobContext, outcome: Outcome, exc: RateLimited
    ) -> None:
        """The handler raised ``RateLimited``: its task's limit (this job's key) admits
        nothing for ``retry_after`` in any runner, and the job goes back to ``todo`` with
        the attempt given back (its claim released by token), its message due when the
        back-off ends. Should SQL not answer the release, the message goes back all the
        same: its claim fails against the running row until the reclaimer takes over."""
        assert self._be is not None
        msg, be = claimed.msg, self._be
        delay_us = int(exc.retry_after * 1e6)
        lim = self._limits().get(msg.task)
        if lim is not None:
            try:
                key = lim.state_key(be.broker.keys.tag, msg)
                await be.broker.back_off(key, delay_us, lim.limit.tolerance_us)
            except BackendError as e:
                log.warning("rate limit back-off of task %s not stored: %s", msg.task, e)
        log.info(
            "job %s (%s) rate limited: put back for %.3gs, attempt not counted",
            msg.id,
            msg.task,
            exc.retry_after,
        )
        await self._after_hooks(ctx, outcome)  # status todo: execute() made it so
        if await self._unconfirmed(claimed):
            return
        self._forget(msg.id, claimed.token)
        released: int | None = None
        with contextlib.suppress(BackendError):
            released = await be.store.release_claims([(msg.id, claimed.token)], self.clock())
        if released == 0:  # the lease was revoked: the job is someone else's now
            await self._settle_retrying(msg.raw, back=False)
            return
        self.stats.released += 1
        await self._settle_retrying(msg.raw, back=True, until=self.clock() + delay_us)

    async def _unconfirmed(self, claimed: Claimed) -> bool:
        """After the handler ran: True when its claim did not become durable here, so no
        outcome may be recorded. Claimed elsewhere: drop this delivery. Unknown (SQL out
        of reach until the local deadline): put the message back on the ready list; if
        SQL does hold the claim, that copy loses its claim and the reclaimer takes over."""
        assert self._claimer is not None
        verdict = await self._claimer.confirmed(claimed)
        if verdict == "durable":
            return False
        self.stats.claims_lost += 1
        await self._settle_retrying(claimed.msg.raw, back=verdict == "unknown")
        return True

    async def _settle_retrying(self, raw: bytes, *, back: bool, until: int | None = None) -> None:
        """Remove one delivery from this runner's working list and, if ``back``, send the
        message again (through the delayed set, due now: the promoter puts it on the
        ready list of its priority). Retried while Redis is out of reach: a message left
        in the working list would wait for this runner's exit. ``until``: due then (µs),
        not now."""
        assert self._be is not None
        routes = None
        if back:
            routes = Routes()
            if until is None:
                route_give_back(routes, raw, self.clock())
            else:
                route_later(routes, raw, until)
        delay = 0.05
        for _ in range(10):
            try:
                await self._be.dispatcher.settle(self.id, [raw], routes)
                return
            except BackendError as exc:
                log.warning("settling in Redis failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _after_hooks(self, ctx: JobContext, outcome: Outcome) -> None:
        await run_after_hooks(self.queue, ctx, outcome)

    def _make_committer(self, claimed: Claimed) -> Any:
        msg, token = claimed.msg, claimed.token

        async def commit(
            ctx: JobContext,
            status: JobStatus,
            result: Any,
            error: str | None,
            delay: float | None,
        ) -> None:
            now = self.clock()
            if status is JobStatus.DONE:
                outcome = Outcome(status, result=dumps(result, "the job's result"))
            elif status is JobStatus.FAILED:
                outcome = Outcome(status, error=encode_reason("Failed", error or "failed"))
            elif status is JobStatus.TODO:
                run_at = now + int(max(0.0, delay or 0.0) * 1e6)
                reason = encode_reason("Retry", error or "put back by the handler")
                outcome = Outcome(status, error=reason, run_at=run_at)
            else:
                raise CommitError(f"cannot commit a job as {status.value!r}")
            await self._after_hooks(ctx, outcome)
            assert self._recorder is not None
            if await self._unconfirmed(claimed):
                raise CommitError(
                    f"commit of job {msg.id} rejected: its claim was never committed here "
                    "(another runner owns the job now, or SQL was out of reach)"
                )
            if not await self._recorder.record(msg, token, outcome):
                raise CommitError(
                    f"commit of job {msg.id} rejected: its lease token was revoked (another "
                    "runner owns the job now)"
                )
            self._forget(msg.id, token)

        return commit

    async def _reconcile_working(self) -> None:
        """After a Redis error on a move, the reply may have been lost while the move
        happened: messages sit in this runner's working list that no task of it knows.
        Put those back on the ready list."""
        assert self._be is not None
        orphans = self.core.orphans(await self._be.broker.working_items(self.id))
        if orphans:
            await self._be.broker.settle(self.id, orphans, ready=orphans)
            log.warning(
                "returned %d orphaned message(s) to ready after a Redis error", len(orphans)
            )


def _log_failure(ctx: JobContext, status: JobStatus | None, exc: BaseException) -> None:
    """One line per failed attempt (its traceback is in the row's ``error``)."""
    final = status is JobStatus.FAILED
    log.log(
        logging.WARNING if final else logging.INFO,
        "job %s (%s) attempt %d/%d failed: %s: %s%s",
        ctx.job_id,
        ctx.task,
        ctx.attempt,
        ctx.max_attempts,
        type(exc).__qualname__,
        _safe_str(exc),
        "" if final else "; retrying",
    )


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)[:500]
    except Exception:
        return "<exception str() failed>"
