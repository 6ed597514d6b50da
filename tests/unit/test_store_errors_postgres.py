"""What each asyncpg error means to the store (pure classification, no server): retry
it, send the statement again elsewhere, report a definite refusal or an unknown
outcome, and whether the connection can be used again."""

from __future__ import annotations

import asyncpg.exceptions as pg
import pytest

from aqueue._store.errors import (
    connection_broken,
    db_error,
    is_definite,
    is_retryable,
    not_sent,
)

CASES = [
    # error, retryable, not sent, definite, connection broken
    (pg.SerializationError("could not serialize"), True, False, True, False),
    (pg.DeadlockDetectedError("deadlock detected"), True, False, True, False),
    (pg.LockNotAvailableError("canceling statement due to lock timeout"), True, False, True, False),
    (pg.UniqueViolationError("duplicate key"), False, False, True, False),
    # The server ended the session: a statement in flight may have committed.
    (pg.AdminShutdownError("terminating connection"), False, False, False, True),
    (
        pg.ConnectionDoesNotExistError("closed in the middle of operation"),
        False,
        False,
        False,
        True,
    ),
    # Checked by the driver before anything is written.
    (pg.InterfaceError("cannot perform operation: connection is closed"), False, True, True, True),
    (
        pg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        False,
        True,
        True,
        True,
    ),
]


@pytest.mark.parametrize(("exc", "retryable", "unsent", "definite", "broken"), CASES)
def test_asyncpg_errors_are_classified(
    exc: BaseException, retryable: bool, unsent: bool, definite: bool, broken: bool
) -> None:
    assert db_error(exc)
    assert is_retryable(exc) is retryable
    assert not_sent(exc) is unsent
    assert is_definite(exc) is definite
    assert connection_broken(exc) is broken


async def test_a_failed_insert_is_refused_or_of_unknown_outcome() -> None:
    import asyncmy.errors as my

    from aqueue import EnqueueOutcomeUnknownError, StoreError
    from aqueue._store.executor import insert_failure

    # the reply (or the COMMIT's) was lost: it may have been stored
    for lost in (my.OperationalError(2013, "Lost connection"), pg.AdminShutdownError("bye")):
        unknown = insert_failure(lost, "j1", 3)
        assert isinstance(unknown, EnqueueOutcomeUnknownError) and unknown.job_id == "j1"
    # refused by the server: certainly not stored
    for refused in (my.IntegrityError(1062, "Duplicate"), pg.UniqueViolationError("dup")):
        assert type(insert_failure(refused, "j1", 3)) is StoreError
