"""The SQL builders are pure: values in, ``(sql, params)`` out, per dialect."""

from __future__ import annotations

from typing import Any

import pytest

from aqueue._models import IdRun, JobStatus, NewJob
from aqueue._store.sql import MySQLQueries, Queries, SQLiteQueries, dialect
from aqueue._store.values import Claim, Finish, Reclaim

DIALECTS = [MySQLQueries("jobs", "jobs_meta"), SQLiteQueries("jobs", "jobs_meta")]


def _plain(sql: str, q: Queries) -> str:
    """The statement with its dialect's placeholder spelled ``?``."""
    return sql.replace(q.mark, "?")


def test_each_backend_has_its_dialect() -> None:
    assert dialect("sqlite") is SQLiteQueries
    assert dialect("mysql") is MySQLQueries
    assert dialect("mariadb") is MySQLQueries


@pytest.mark.parametrize(("q", "mark"), [(DIALECTS[0], "%s"), (DIALECTS[1], "?")])
def test_placeholders_are_the_dialects(q: Queries, mark: str) -> None:
    sql, params = q.get_job("j1")
    assert sql.endswith(f"FROM jobs WHERE id = {mark}")
    assert params == ["j1"]


@pytest.mark.parametrize("q", DIALECTS)
def test_bind_appends_in_text_order(q: Queries) -> None:
    params: list[Any] = ["first"]
    assert q.bind(params, 7) == q.mark
    assert q.bind_all(params, ["a", "b", "c"]) == f"{q.mark}, {q.mark}, {q.mark}"
    assert params == ["first", 7, "a", "b", "c"]


@pytest.mark.parametrize("q", DIALECTS)
def test_a_finish_of_two_jobs_under_one_token_names_the_token_once(q: Queries) -> None:
    group = [Finish("a", "T", JobStatus.DONE, "r"), Finish("b", "T", JobStatus.DONE, "r")]
    sql, params = q.finish(JobStatus.DONE, group, 100)
    assert _plain(sql, q) == (
        "UPDATE jobs SET status = ?, updated_at = ?, result = ?, finished_at = ?, "
        "leased_until = NULL, unique_key = NULL "
        "WHERE id IN (?, ?) AND status = 'running' AND lease_token = ? AND has_children = 0"
    )
    assert params == ["done", 100, "r", 100, "a", "b", "T"]
    # a parent's finish (which releases its children) is the other half
    assert q.finish(JobStatus.DONE, group, 100, parents=True)[0].endswith("has_children = 1")


@pytest.mark.parametrize("q", DIALECTS)
def test_a_finish_under_two_tokens_pairs_each_token_with_its_ids(q: Queries) -> None:
    group = [
        Finish("a", "T1", JobStatus.FAILED, error="e1"),
        Finish("b", "T2", JobStatus.FAILED, error="e2"),
    ]
    sql, params = q.finish(JobStatus.FAILED, group, 100)
    assert _plain(sql, q) == (
        "UPDATE jobs SET status = ?, updated_at = ?, "
        "error = CASE id WHEN ? THEN ? WHEN ? THEN ? END, finished_at = ?, "
        "leased_until = NULL, unique_key = NULL WHERE id IN (?, ?) AND status = 'running' AND "
        "((lease_token = ? AND id IN (?)) OR (lease_token = ? AND id IN (?))) "
        "AND has_children = 0"
    )
    assert params == ["failed", 100, "a", "e1", "b", "e2", 100, "a", "b", "T1", "a", "T2", "b"]


@pytest.mark.parametrize("q", DIALECTS)
def test_a_retry_puts_the_lease_back_and_unmarks_the_dispatch(q: Queries) -> None:
    sql, params = q.finish(JobStatus.TODO, [Finish("a", "T", JobStatus.TODO, None, "x", 50)], 9)
    assert (
        "lease_owner = NULL, lease_token = NULL, leased_until = NULL, dispatched_at = NULL" in sql
    )
    assert "finished_at" not in sql
    assert params == ["todo", 9, "x", 50, "a", "T"]


@pytest.mark.parametrize("q", DIALECTS)
def test_a_claim_is_fenced_by_literal_counts_when_they_agree(q: Queries) -> None:
    sql, params, ordered = q.claim(Claim([("b", 1, 2), ("a", 1, 2)], "o", "T", 500, 100))
    assert ordered == ["a", "b"]
    assert _plain(sql, q).endswith(
        "WHERE id IN (?, ?) AND status = 'todo' AND run_at <= ? AND stalls = 1 AND attempts = 2"
    )
    assert params == ["o", "T", 500, 100, 100, "a", "b", 100]


@pytest.mark.parametrize("q", DIALECTS)
def test_a_claim_of_differing_counts_fences_each_job(q: Queries) -> None:
    # two copies of "a": the later counts fence it
    sql, params, _ = q.claim(Claim([("a", 0, 1), ("b", 0, 0), ("a", 0, 2)], "o", "T", 5, 1))
    assert _plain(sql, q).endswith(
        "AND stalls = 0 AND attempts = CASE id WHEN ? THEN ? WHEN ? THEN ? END"
    )
    assert params[-4:] == ["a", 2, "b", 0]


def test_the_dialects_differ_where_their_sql_does() -> None:
    mysql, sqlite = DIALECTS
    jobs = [NewJob("a", "q", "t", "{}", 0, 3, 10, 5, "k")]
    assert mysql.insert(jobs, 7, careful=True)[0].endswith(" ON DUPLICATE KEY UPDATE id = id")
    assert sqlite.insert(jobs, 7, careful=True)[0].endswith(" ON CONFLICT DO NOTHING")
    # not INSERT IGNORE: an existing key would be answered with a warning to read back
    assert mysql.record_first_seen("k", 1)[0] == (
        "INSERT INTO jobs_meta (name, value) VALUES (%s, %s) ON DUPLICATE KEY UPDATE name = name"
    )
    assert sqlite.record_first_seen("k", 1)[0].startswith("INSERT OR IGNORE INTO jobs_meta")
    assert "UNIX_TIMESTAMP" in mysql.server_time()[0]
    assert "julianday" in sqlite.server_time()[0]
    assert mysql.holds_claims_open and not sqlite.holds_claims_open


@pytest.mark.parametrize("q", DIALECTS)
def test_an_insert_binds_nine_values_a_row_and_writes_the_shared_ones(q: Queries) -> None:
    jobs = [NewJob("a", "q", "t", "{}", 0, 3, 10, 5), NewJob("b", "q", "t", "[]", 1, 2, 11, 5)]
    sql, params = q.insert(jobs, 7, careful=False)
    row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, 'todo', 0, 0, 7)"
    assert _plain(sql, q).endswith(f"VALUES {row}, {row}")
    assert params == [*jobs[0][:9], *jobs[1][:9]]


@pytest.mark.parametrize("q", DIALECTS)
def test_marks_name_each_write_and_each_run_of_batch_ids(q: Queries) -> None:
    sql, params = q.mark_dispatched(
        [("b", 1), ("a", 1)], "E", 9, [(IdRun("x", "y", 3), 4)], unmarked_only=True
    )
    assert _plain(sql, q) == (
        "UPDATE jobs SET dispatched_at = ?, dispatch_epoch = ? WHERE "
        "((updated_at = ? AND id IN (?, ?)) OR "
        "(id BETWEEN ? AND ? AND created_at = ? AND updated_at = ?)) AND dispatched_at IS NULL"
    )
    assert params == [9, "E", 1, "a", "b", "x", "y", 3, 4]


@pytest.mark.parametrize("q", DIALECTS)
def test_a_reclaim_to_todo_gives_the_attempt_back(q: Queries) -> None:
    sql, params = q.reclaim(JobStatus.TODO, [Reclaim("a", "T", JobStatus.TODO, None)], 4, 5)
    assert "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END" in sql
    assert _plain(sql, q).endswith(
        "WHERE id IN (?) AND status = 'running' AND leased_until < ? AND lease_token = ?"
    )
    assert params == ["todo", 5, 5, "a", 4, "T"]


@pytest.mark.parametrize("q", DIALECTS)
def test_a_forced_repush_sets_run_at_before_the_rest(q: Queries) -> None:
    sql, params = q.repush_running("a", 5)
    assert sql.startswith("UPDATE jobs SET run_at = COALESCE(leased_until, ")
    assert params == [5, 5, "a"]


@pytest.mark.parametrize("q", DIALECTS)
def test_cancel_brings_run_at_forward(q: Queries) -> None:
    sql, params = q.cancel("a", "why", 5)
    assert "run_at = CASE WHEN run_at > ? THEN ? ELSE run_at END" in _plain(sql, q)
    assert params == ["why", 5, 5, 5, 5, "a"]
