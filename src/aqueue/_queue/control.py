"""Job control and admin reads of a queue: handles on jobs, manual commits, repush,
cancel, purges, ids and counts by status, runners' counters. A mixin of the client
(see ``aqueue._queue``), over the backend :class:`Connection` owns.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .._errors import BrokerError, CommitError, JobError, JobNotFoundError
from .._job import Job
from .._models import JobStatus
from .._serde import dumps, encode_reason
from .._store.caller import cancel_on, connection_of, get_job_on, sql_store
from .._store.values import Finish
from .connection import Connection


class JobControl(Connection):
    """Reads and changes existing jobs."""

    def job(self, job_id: str) -> Job:
        """A handle on an existing job by id."""
        return Job(self, job_id)

    async def commit(
        self,
        job_id: str,
        token: str,
        status: str | JobStatus,
        *,
        result: Any = None,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        """Record a job's outcome from anywhere with its lease token (a manual commit
        made outside the handler, e.g. by another system): ``done`` (with ``result``),
        ``failed`` (with ``error``) or ``todo`` (run again after ``delay``). Raises
        :class:`CommitError` when the token does not hold the job any more."""
        st = JobStatus(status)
        if st not in (JobStatus.DONE, JobStatus.FAILED, JobStatus.TODO):
            raise CommitError(f"cannot commit a job as {st.value!r}")
        be = await self._backend()
        now = self._clock()
        run_at = now + int(max(0.0, delay or 0.0) * 1e6)
        finish = Finish(
            job_id,
            token,
            st,
            result=dumps(result, "the job's result") if st is JobStatus.DONE else None,
            error=None if st is JobStatus.DONE else encode_reason("Committed", error or st.value),
            run_at=run_at if st is JobStatus.TODO else None,
        )
        if job_id not in await be.store.finish([finish], now):
            raise CommitError(
                f"commit of job {job_id} rejected: the token does not hold it (wrong token, "
                "lease lost, or already finished)"
            )
        if st is JobStatus.TODO:
            rec = await be.store.get_job(job_id)
            if rec is not None:
                epoch = await be.dispatcher.rows([rec], now)
                if epoch is not None:
                    be.marker.add([job_id], rec.updated_at, epoch)

    async def repush(self, job_id: str, *, force: bool = False) -> Job:
        """Force a job back to ``todo`` with fresh attempts and into Redis, whatever its
        state. A ``running`` job is refused unless ``force``: then
        its lease token is revoked, its runner cancels the handler at its next renewal,
        and the job may start again only when the old lease would have ended — never two
        runs at once."""
        be = await self._backend()
        now = self._clock()
        rec = await be.store.repush(job_id, now, force=force)
        if rec is None:
            raise JobNotFoundError(job_id, f"no job {job_id}")
        if rec.status is JobStatus.RUNNING:
            raise JobError(job_id, f"job {job_id} is running: pass force=True to repush it")
        epoch = await be.dispatcher.rows([rec], now)
        if epoch is not None:
            be.marker.add([job_id], rec.updated_at, epoch)
        return Job(self, job_id)

    async def cancel(
        self, job_id: str, reason: str = "cancelled", *, connection: Any = None
    ) -> bool:
        """Cancel a job that has not finished: a queued one never runs; a running one has
        its coroutine cancelled on whichever runner holds it (at that runner's next lease
        renewal, within ``heartbeat`` seconds) and its outcome is not recorded. Returns
        False when the job had already finished. With ``connection`` (the application's
        SQLAlchemy connection or session) the cancel is made in its transaction."""
        be = await self._backend()
        if connection is not None:
            store = sql_store(be.store)
            conn = await connection_of(store, connection)
            if await get_job_on(store, conn, job_id) is None:
                raise JobNotFoundError(job_id, f"no job {job_id}")
            reason = encode_reason("Cancelled", reason)
            return await cancel_on(store, conn, job_id, reason, self._clock())
        rec = await be.store.get_job(job_id)
        if rec is None:
            raise JobNotFoundError(job_id, f"no job {job_id}")
        ok = await be.store.cancel(job_id, encode_reason("Cancelled", reason), self._clock())
        if ok:
            with contextlib.suppress(BrokerError):
                await be.broker.notify_finished([job_id])
        return ok

    async def purge_finished(self, older_than: float) -> int:
        """Delete this queue's finished jobs (and their results) that finished more than
        ``older_than`` seconds ago. Runners also do it
        periodically when ``RunnerConfig.keep_results`` is set."""
        be = await self._backend()
        return await be.store.purge_finished(self.name, self._clock() - int(older_than * 1e6))

    async def runner_stats(self) -> dict[str, dict[str, int]]:
        """Per-runner counters (executed, done, failed, retried, ...) published by the
        live runners of this queue at every heartbeat."""
        be = await self._backend()
        return await be.broker.runner_stats()

    async def job_ids(self, status: str | JobStatus, limit: int = 1000) -> list[str]:
        """Ids of this queue's jobs in ``status`` (oldest first)."""
        be = await self._backend()
        return await be.store.ids_by_status(self.name, JobStatus(status), limit)

    async def counts(self) -> dict[JobStatus, int]:
        """Number of jobs of this queue in each status (from SQL)."""
        be = await self._backend()
        return await be.store.count_by_status(self.name)

    async def purge(self) -> int:
        """Delete every job of this queue from SQL and its keys from Redis."""
        be = await self._backend()
        n = await be.store.purge_queue(self.name)
        await be.broker.purge()
        return n
