"""The statements every SQL dialect shares, as pure builders: each takes values and returns
``(sql, params)``; the store runs them. A dialect module (``mysql``, ``sqlite``) fills in
what differs: its placeholder, its insert-or-ignore syntax, its clock, its session setup.

Every placeholder is written by :meth:`BaseQueries.bind` (or ``bind_all``, ``bind_rows``), which
appends the value to the statement's parameters and returns the placeholder's text, so
a dialect with numbered placeholders (``$1``) overrides those, and ``ids_in``/``ids_not_in``
where it has a better form of a list of ids than ``IN (...)``. Builders
therefore write a statement's text in the order its values are bound.

Every state change is a compare-and-set ``UPDATE ... WHERE id IN (...) AND <expected
state>``; nothing reads and then writes. Multi-row statements touch rows by primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..._models import IdRun, JobRecord, JobStatus, NewJob
from ..values import Finish

Statement = tuple[str, list[Any]]

JOB_COLUMNS = (
    "id, queue, task, payload, status, priority, attempts, stalls, max_attempts, run_at, "
    "lease_owner, lease_token, leased_until, result, error, unique_key, created_at, "
    "updated_at, finished_at, parents_left, progress, progress_message, tags"
)
"""The columns of a :class:`JobRecord`, in the order :func:`record` reads them."""

# What a job's lease becomes when it is put back (shared by the writes that do)
_PUT_BACK = "lease_owner = NULL, lease_token = NULL, leased_until = NULL"


def record(r: Sequence[Any]) -> JobRecord:
    """A row of :data:`JOB_COLUMNS` as a job record."""
    return JobRecord(
        id=r[0],
        queue=r[1],
        task=r[2],
        payload=r[3],
        status=JobStatus(r[4]),
        priority=int(r[5]),
        attempts=int(r[6]),
        stalls=int(r[7]),
        max_attempts=int(r[8]),
        run_at=int(r[9]),
        lease_owner=r[10],
        lease_token=r[11],
        leased_until=r[12],
        result=r[13],
        error=r[14],
        unique_key=r[15],
        created_at=int(r[16]),
        updated_at=int(r[17]),
        finished_at=r[18],
        parents_left=int(r[19]),
        progress=None if r[20] is None else float(r[20]),
        progress_message=r[21],
        tags=r[22],
    )


class BaseQueries:
    """The shared statements of enqueue, finish, reads and marks over one jobs table
    (``t``, quoted) and its meta table (``meta``, quoted)."""

    mark: ClassVar[str]
    """The positional placeholder (``%s``, ``?``)."""
    insert_or_ignore: ClassVar[str]
    """``INSERT`` that skips a row whose key exists (``INSERT IGNORE``, ...)."""
    on_conflict_ignore: ClassVar[str]
    """The clause that makes an ``INSERT ... VALUES`` skip rows whose key exists."""
    server_time_sql: ClassVar[str]
    """A query of the server's clock, now, in UNIX µs."""
    holds_claims_open: ClassVar[bool]
    """Whether a claim may be left uncommitted while its jobs start (row locks keep every
    other writer off them; a single-writer database would be locked meanwhile)."""

    def __init__(self, table: str, meta: str) -> None:
        self.t = table
        self.meta = meta

    @staticmethod
    def session(*, sqlite_synchronous: str, lock_wait_timeout: int) -> list[str]:
        """Statements run on every new connection."""
        raise NotImplementedError

    @staticmethod
    def connect_args(*, lock_wait_timeout: int) -> dict[str, Any]:
        """Arguments of the driver's ``connect()`` (settings a driver sends at connect
        time instead of as statements)."""
        return {}

    # -- placeholders ---------------------------------------------------------------

    def bind(self, params: list[Any], value: Any) -> str:
        """Append ``value`` to ``params``; return its placeholder."""
        params.append(value)
        return self.mark

    def bind_all(self, params: list[Any], values: Sequence[Any]) -> str:
        """Append ``values``; return their placeholders, comma-separated."""
        params.extend(values)
        return ", ".join([self.mark] * len(values))

    def ids_in(self, params: list[Any], ids: Sequence[str]) -> str:
        """SQL true for a row whose ``id`` is one of ``ids``."""
        return f"id IN ({self.bind_all(params, ids)})"

    def ids_not_in(self, params: list[Any], ids: Sequence[str]) -> str:
        """SQL true for a row whose ``id`` is none of ``ids``."""
        return f"id NOT IN ({self.bind_all(params, ids)})"

    def bind_rows(
        self, params: list[Any], rows: Sequence[Sequence[Any]], width: int, tail: str
    ) -> str:
        """``VALUES`` rows: each binds its first ``width`` values, then ``tail`` (literal
        SQL) follows."""
        row = "(" + ", ".join([self.mark] * width) + tail + ")"
        for values in rows:
            params += values[:width]
        return ", ".join([row] * len(rows))

    # -- fragments --------------------------------------------------------------------

    def earlier(self, column: str, params: list[Any], value: Any) -> str:
        """SQL for the earlier of ``column`` and ``value`` (SQLite has no ``LEAST``)."""
        b = self.bind
        return f"CASE WHEN {column} > {b(params, value)} THEN {b(params, value)} ELSE {column} END"

    def case(self, column_values: Sequence[tuple[str, Any]], params: list[Any]) -> str:
        """``CASE id WHEN <id> THEN <value> ... END``."""
        b = self.bind
        parts = ["CASE id"]
        for job_id, value in column_values:
            parts.append(f"WHEN {b(params, job_id)} THEN {b(params, value)}")
        parts.append("END")
        return " ".join(parts)

    def tokens_match(self, items: Sequence[tuple[str, str]], params: list[Any]) -> str:
        """SQL true for a row whose lease token is the one given with its id. Jobs come in
        claim batches, each under one token, so this names each token once (an id-to-token
        CASE would spell out every pair, a statement twice as long to send and parse)."""
        by_token: dict[str, list[str]] = {}
        for job_id, token in items:
            by_token.setdefault(token, []).append(job_id)
        if len(by_token) == 1:
            return f"lease_token = {self.bind(params, items[0][1])}"
        parts = []
        for token, ids in by_token.items():
            tok = self.bind(params, token)
            parts.append(f"(lease_token = {tok} AND {self.ids_in(params, ids)})")
        return "(" + " OR ".join(parts) + ")"

    def set_value(self, name: str, values: Sequence[tuple[str, Any]], params: list[Any]) -> str:
        """``name = <value>``, one value for all rows or a ``CASE`` per id."""
        distinct = {v for _, v in values}
        if len(distinct) == 1:
            return f"{name} = {self.bind(params, values[0][1])}"
        return f"{name} = " + self.case(values, params)

    # -- enqueue ----------------------------------------------------------------------

    def insert(self, jobs: Sequence[NewJob], now: int, *, careful: bool) -> Statement:
        """Insert new jobs. ``careful``: rows whose key exists (explicit id, live unique
        key) are skipped, not an error."""
        # The columns in NewJob's field order: a row's parameters are its first nine.
        cols = (
            "id, queue, task, payload, priority, max_attempts, run_at, created_at, unique_key, "
            "status, attempts, stalls, updated_at"
        )
        # The values every new row shares are literals: fewer parameters to escape.
        params: list[Any] = []
        values = self.bind_rows(params, jobs, 9, f", 'todo', 0, 0, {int(now)}")
        sql = f"INSERT INTO {self.t} ({cols}) VALUES " + values
        if careful:
            sql += self.on_conflict_ignore
        return sql, params

    def inserted(self, ids: Sequence[str]) -> Statement:
        params: list[Any] = []
        sql = f"SELECT id, queue, unique_key FROM {self.t} WHERE {self.ids_in(params, ids)}"
        return sql, params

    def unique_holder(self, queue: str, unique_key: str) -> Statement:
        params: list[Any] = []
        b = self.bind
        sql = (
            f"SELECT id FROM {self.t} WHERE queue = {b(params, queue)} AND "
            f"unique_key = {b(params, unique_key)}"
        )
        return sql, params

    # -- finish / renew / release -------------------------------------------------------

    def finish(
        self, status: JobStatus, group: Sequence[Finish], now: int, *, parents: bool | None = False
    ) -> Statement:
        """Record finished attempts of one status, ``group`` sorted by id. A final finish
        applies only to jobs with no children (``parents``: only to jobs with some, whose
        finish also releases them: ``_store.deps``; ``None``: to either)."""
        b = self.bind
        params: list[Any] = []
        sets = [f"status = {b(params, status.value)}", f"updated_at = {b(params, now)}"]
        if status is JobStatus.DONE:
            sets.append(self.set_value("result", [(f.id, f.result) for f in group], params))
        else:
            sets.append(self.set_value("error", [(f.id, f.error) for f in group], params))
        if status is JobStatus.TODO:
            sets.append(self.set_value("run_at", [(f.id, f.run_at or now) for f in group], params))
            # Not in Redis until the follow-up message is pushed and marked: if that push
            # is lost, the sweeper sends it.
            sets.append(f"{_PUT_BACK}, dispatched_at = NULL")
        else:
            sets.append(f"finished_at = {b(params, now)}, leased_until = NULL, unique_key = NULL")
        sets_sql = ", ".join(sets)
        where = f"{self.ids_in(params, [f.id for f in group])} AND status = 'running' AND "
        where += self.tokens_match([(f.id, f.token) for f in group], params)
        if status is not JobStatus.TODO and parents is not None:
            where += f" AND has_children = {int(parents)}"
        return f"UPDATE {self.t} SET {sets_sql} WHERE {where}", params

    def finished(self, ids: Sequence[str], status: JobStatus, now: int) -> Statement:
        """The ids among ``ids`` that a finish at ``now`` wrote (they carry its
        ``updated_at``)."""
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT id FROM {self.t} WHERE {self.ids_in(params, ids)} "
            f"AND status = {b(params, status.value)} AND updated_at = {b(params, now)}"
        )
        return sql, params

    def renew(self, items: Sequence[tuple[str, str]], leased_until: int) -> Statement:
        """Extend the leases of these (id, token) claims, ``items`` sorted."""
        params: list[Any] = []
        sets = f"leased_until = {self.bind(params, leased_until)}"
        where = f"{self.ids_in(params, [i for i, _ in items])} AND status = 'running' AND "
        where += self.tokens_match(items, params)
        return f"UPDATE {self.t} SET {sets} WHERE {where}", params

    def lease_states(self, ids: Sequence[str]) -> Statement:
        params: list[Any] = []
        sql = f"SELECT id, lease_token, status FROM {self.t} WHERE {self.ids_in(params, ids)}"
        return sql, params

    def release_owner(self, queue: str, owner: str, now: int, keep: Sequence[str]) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"UPDATE {self.t} SET status = 'todo', attempts = attempts - 1, "
            f"{_PUT_BACK}, updated_at = {b(params, now)} "
            f"WHERE queue = {b(params, queue)} AND status = 'running' "
            f"AND lease_owner = {b(params, owner)}"
        )
        if keep:
            sql += f" AND {self.ids_not_in(params, keep)}"
        return sql, params

    def fail_unclaimed(self, job_id: str, error: str, now: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"UPDATE {self.t} SET status = 'failed', error = {b(params, error)}, "
            f"finished_at = {b(params, now)}, run_at = {self.earlier('run_at', params, now)}, "
            f"updated_at = {b(params, now)}, unique_key = NULL "
            f"WHERE id = {b(params, job_id)} AND status = 'todo'"
        )
        return sql, params

    # -- reads ----------------------------------------------------------------------

    def get_job(self, job_id: str) -> Statement:
        params: list[Any] = []
        return f"SELECT {JOB_COLUMNS} FROM {self.t} WHERE id = {self.bind(params, job_id)}", params

    def count_by_status(self, queue: str) -> Statement:
        params: list[Any] = []
        sql = (
            f"SELECT status, COUNT(*) FROM {self.t} WHERE queue = {self.bind(params, queue)} "
            "GROUP BY status"
        )
        return sql, params

    def ids_by_status(self, queue: str, status: JobStatus, limit: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT id FROM {self.t} WHERE queue = {b(params, queue)} AND "
            f"status = {b(params, status.value)} ORDER BY id LIMIT {int(limit)}"
        )
        return sql, params

    def unfinished_count(self, queue: str, now: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT COUNT(*) FROM {self.t} WHERE queue = {b(params, queue)} AND "
            f"((status = 'todo' AND run_at <= {b(params, now)}) OR status = 'running')"
        )
        return sql, params

    def waiting_jobs(self, queue: str, cap: int) -> Statement:
        """The ``todo`` jobs of ``queue``, counted up to ``cap``. The count reads the
        ``(queue, status, run_at)`` index, and the cap bounds it when a queue holds far
        more than its ``max_size`` (jobs enqueued by producers without one)."""
        params: list[Any] = []
        sql = (
            f"SELECT COUNT(*) FROM (SELECT 1 FROM {self.t} WHERE "
            f"queue = {self.bind(params, queue)} AND "
            f"status = 'todo' LIMIT {int(cap)}) AS waiting"
        )
        return sql, params

    def server_time(self) -> Statement:
        return self.server_time_sql, []

    # -- dispatch marks ---------------------------------------------------------------

    def dispatchable(self, queue: str, after_id: str, limit: int, now: int) -> Statement:
        b = self.bind
        params: list[Any] = []
        sql = (
            f"SELECT {JOB_COLUMNS} FROM {self.t} WHERE queue = {b(params, queue)} AND "
            f"id > {b(params, after_id)} AND "
            f"(status = 'todo' OR (status = 'running' AND leased_until < {b(params, now)})) "
            f"ORDER BY id LIMIT {int(limit)}"
        )
        return sql, params

    def mark_dispatched(
        self,
        marks: Sequence[tuple[str, int]],
        epoch: str,
        now: int,
        runs: Sequence[tuple[IdRun, int]],
        unmarked_only: bool,
    ) -> Statement:
        b = self.bind
        params: list[Any] = []
        sets = f"dispatched_at = {b(params, now)}, dispatch_epoch = {b(params, epoch)}"
        by_write: dict[int, list[str]] = {}
        for job_id, written_at in marks:
            by_write.setdefault(written_at, []).append(job_id)
        where: list[str] = []
        for written_at, ids in by_write.items():
            at = b(params, written_at)
            where.append(f"(updated_at = {at} AND {self.ids_in(params, sorted(ids))})")
        for r, written_at in runs:
            where.append(
                f"(id BETWEEN {b(params, r.first)} AND {b(params, r.last)} AND "
                f"created_at = {b(params, r.created_at)} AND updated_at = {b(params, written_at)})"
            )
        sql = f"UPDATE {self.t} SET {sets} WHERE ({' OR '.join(where)})"
        if unmarked_only:
            sql += " AND dispatched_at IS NULL"
        return sql, params

    def unmarked(self, ids: Sequence[str]) -> Statement:
        """Which of ``ids`` carry no dispatch mark."""
        params: list[Any] = []
        sql = f"SELECT id FROM {self.t} WHERE {self.ids_in(params, ids)} AND dispatched_at IS NULL"
        return sql, params

    def purge_queue(self, queue: str) -> Statement:
        params: list[Any] = []
        return f"DELETE FROM {self.t} WHERE queue = {self.bind(params, queue)}", params

    # -- schedules ------------------------------------------------------------------

    def record_first_seen(self, key: str, now: int) -> Statement:
        """A periodic or cron schedule's state is the time it was first seen: one row per
        schedule in the meta table (the jobs table's companion); the first insert wins."""
        b = self.bind
        params: list[Any] = []
        sql = (
            f"{self.insert_or_ignore} INTO {self.meta} (name, value) "
            f"VALUES ({b(params, key)}, {b(params, str(now))})"
        )
        return sql, params

    def first_seen(self, key: str) -> Statement:
        params: list[Any] = []
        return f"SELECT value FROM {self.meta} WHERE name = {self.bind(params, key)}", params
