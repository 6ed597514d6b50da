"""The PostgreSQL builders: numbered placeholders that match their parameters, one
statement text whatever the number of jobs (asyncpg caches prepared statements by text),
typed where the server could not infer a type."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from aqueue._models import IdRun, JobStatus, NewJob
from aqueue._store.sql import PostgresQueries, dialect
from aqueue._store.values import Claim, Finish, JobQuery, Reclaim

q = PostgresQueries('"jobs"', '"jobs_meta"')


def _jobs(n: int) -> list[NewJob]:
    return [NewJob(f"j{i}", "q", "t", "{}", 0, 3, 10, 5, None) for i in range(n)]


def _finishes(n: int) -> list[Finish]:
    return [Finish(f"j{i}", "T", JobStatus.DONE, "r") for i in range(n)]


def _statements(n: int) -> dict[str, tuple[str, list[Any]]]:
    """Every builder, over ``n`` jobs where it takes several."""
    ids = [f"j{i}" for i in range(n)]
    items = [(i, "T") for i in ids]
    claim = q.claim(Claim([(i, 0, 0) for i in ids], "o", "T", 500, 100))
    return {
        "insert": q.insert(_jobs(n), 7, careful=False),
        "insert careful": q.insert(_jobs(n), 7, careful=True),
        "inserted": q.inserted(ids),
        "unique_holder": q.unique_holder("q", "k"),
        "finish": q.finish(JobStatus.DONE, _finishes(n), 9),
        "retry": q.finish(
            JobStatus.TODO, [Finish(i, "T", JobStatus.TODO, None, "x", 50) for i in ids], 9
        ),
        "finished": q.finished(ids, JobStatus.DONE, 9),
        "renew": q.renew(items, 9),
        "lease_states": q.lease_states(ids),
        "release_owner": q.release_owner("q", "o", 9, ids),
        "fail_unclaimed": q.fail_unclaimed("j0", "e", 9),
        "get_job": q.get_job("j0"),
        "count_by_status": q.count_by_status("q"),
        "ids_by_status": q.ids_by_status("q", JobStatus.TODO, 10),
        "unfinished_count": q.unfinished_count("q", 9),
        "waiting_jobs": q.waiting_jobs("q", 10),
        "dispatchable": q.dispatchable("q", "", 10, 9),
        "mark_dispatched": q.mark_dispatched(
            [(i, 1) for i in ids], "E", 9, [(IdRun("a", "b", 3), 4)], True
        ),
        "purge_queue": q.purge_queue("q"),
        "record_first_seen": q.record_first_seen("k", 9),
        "first_seen": q.first_seen("k"),
        "claim": (claim[0], claim[1]),
        "won": q.won(ids, "T"),
        "running_under": q.running_under(ids, "T"),
        "claim_states": q.claim_states(ids),
        "release_claims": q.release_claims(items, 9),
        "expired_leases": q.expired_leases("q", 9, 10),
        "reclaim todo": q.reclaim(
            JobStatus.TODO, [Reclaim(i, "T", JobStatus.TODO, None) for i in ids], 4, 5
        ),
        "reclaim failed": q.reclaim(
            JobStatus.FAILED, [Reclaim(i, "T", JobStatus.FAILED, "e") for i in ids], 4, 5
        ),
        "owner_running": q.owner_running("q", "o"),
        "undispatched": q.undispatched("q", "E", 9, "", 10),
        "repush": q.repush("j0", 9),
        "repush_running": q.repush_running("j0", 9),
        "cancel": q.cancel("j0", "why", 9),
        "finished_page": q.finished_page("q", 9, 10),
        "delete_finished": q.delete_finished(ids),
        "find_jobs": q.find_jobs(
            JobQuery("q", (JobStatus.FAILED, JobStatus.DONE), "t", None, "x", 1, 2, "j9"), 50
        ),
        "oldest_due": q.oldest_due("q", 9),
        "repush_jobs": q.repush_jobs("q", ids, 9),
        "repushed": q.repushed(ids, 9),
        "cancel_jobs": q.cancel_jobs("q", ids, "why", 9),
        "cancelled": q.cancelled(ids, 9),
        "delete_jobs": q.delete_jobs("q", ids),
    }


def test_postgresql_has_its_dialect() -> None:
    assert dialect("postgresql") is PostgresQueries


@pytest.mark.parametrize("name", sorted(_statements(1)))
def test_every_placeholder_numbers_its_own_parameter(name: str) -> None:
    sql, params = _statements(3)[name]
    assert "%s" not in sql and "?" not in sql
    numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
    assert sorted(set(numbers)) == list(range(1, len(params) + 1)), (sql, params)


@pytest.mark.parametrize("name", sorted(_statements(1)))
def test_a_statement_has_one_text_for_any_number_of_jobs(name: str) -> None:
    # The same text for 2 and 50 jobs (in one batch and under one token): asyncpg prepares
    # it once per connection.
    assert _statements(2)[name][0] == _statements(50)[name][0]


def test_integers_are_typed_and_id_lists_are_one_array() -> None:
    params: list[Any] = []
    assert q.bind(params, 7) == "$1::bigint"
    assert q.bind(params, "x") == "$2"
    assert q.ids_in(params, ["a", "b"]) == "id = ANY($3::text[])"
    assert q.ids_not_in(params, ["c"]) == "id <> ALL($4::text[])"
    assert params == [7, "x", ["a", "b"], ["c"]]


def test_a_batch_insert_is_one_array_per_column() -> None:
    jobs = [NewJob("a", "q", "t", "{}", 0, 3, 10, 5, "k"), NewJob("b", "q", "t", "[]", 1, 2, 11, 6)]
    sql, params = q.insert(jobs, 7, careful=True)
    assert "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[]" in sql
    assert sql.endswith(" ON CONFLICT DO NOTHING")
    assert params == [
        ["a", "b"],
        ["q", "q"],
        ["t", "t"],
        ["{}", "[]"],
        [0, 1],
        [3, 2],
        [10, 11],
        [5, 6],
        ["k", None],
        7,
    ]


def test_schedules_and_the_clock_in_postgresql_terms() -> None:
    assert q.record_first_seen("k", 1)[0] == (
        'INSERT INTO "jobs_meta" (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING'
    )
    assert "clock_timestamp()" in q.server_time()[0]
    assert q.holds_claims_open
    settings: Callable[..., dict[str, Any]] = q.connect_args
    assert settings(lock_wait_timeout=5)["server_settings"]["lock_timeout"] == "5s"
