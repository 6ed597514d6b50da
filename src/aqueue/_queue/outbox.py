"""After-commit hooks of transactional enqueue: jobs inserted in the application's own
transaction go to Redis as soon as that transaction commits, and never when it rolls
back.

The hook is only the fast path. A process that dies between the caller's COMMIT and
the push leaves rows with ``dispatched_at`` NULL and ``updated_at`` = their write time:
the runners' sweeper sends them after its grace, as it does for any enqueue whose push
failed. So the sweeper is the outbox relay and the hook saves its grace period.

- ``AsyncSession``: the session's ``after_commit`` event (fires after the outermost
  COMMIT succeeded); ``after_rollback`` forgets the pending jobs.
- ``AsyncConnection``: Core has no after-commit event; its ``commit`` event fires
  *before* the COMMIT is sent. The hook then waits, on the loop, for that transaction to
  end, and pushes only when it ended by its commit (a failed COMMIT leaves the
  transaction on the connection until it is rolled back). Pushing earlier could let a
  runner see the message before the row is visible.

Hooks run in sync context (inside SQLAlchemy's greenlet): they schedule the push as a
task on the loop, kept referenced until it ends; its failures are logged.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, RootTransaction
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger("aqueue")

Push = Callable[[], Any]
"""Starts the push of some jobs (returns a coroutine)."""

_tasks: set[asyncio.Task[Any]] = set()
_by_session: weakref.WeakKeyDictionary[Session, list[Push]] = weakref.WeakKeyDictionary()
_by_transaction: weakref.WeakKeyDictionary[RootTransaction, list[Push]] = (
    weakref.WeakKeyDictionary()
)
_hooked: weakref.WeakSet[Any] = weakref.WeakSet()


def after_commit(caller: object, conn: AsyncConnection, push: Push) -> None:
    """Run ``push()`` on the loop once ``caller``'s current transaction has committed
    (never if it rolls back)."""
    loop = asyncio.get_running_loop()
    if isinstance(caller, AsyncSession):
        session = caller.sync_session
        _by_session.setdefault(session, []).append(push)
        if session not in _hooked:
            _hooked.add(session)
            event.listen(session, "after_commit", lambda s: _start(loop, _by_session.pop(s, [])))
            event.listen(session, "after_rollback", lambda s: _by_session.pop(s, None))
        return
    sync = conn.sync_connection
    assert sync is not None
    trans = sync.get_transaction()
    if trans is None or not isinstance(trans, RootTransaction):
        raise RuntimeError("transactional enqueue outside a transaction")
    _by_transaction.setdefault(trans, []).append(push)
    if sync not in _hooked:
        _hooked.add(sync)
        event.listen(sync, "commit", lambda c: _committing(loop, c))
        event.listen(sync, "rollback", _rolled_back)


def _committing(loop: asyncio.AbstractEventLoop, sync: Connection) -> None:
    trans = sync.get_transaction()
    pushes = _by_transaction.pop(trans, []) if isinstance(trans, RootTransaction) else []
    if pushes and trans is not None:
        _keep(loop.create_task(_after_commit_of(sync, trans, pushes)))


def _rolled_back(sync: Connection) -> None:
    trans = sync.get_transaction()
    if isinstance(trans, RootTransaction):
        _by_transaction.pop(trans, None)


async def _after_commit_of(sync: Connection, trans: RootTransaction, pushes: list[Push]) -> None:
    # The COMMIT is in flight on the caller's task: no event marks its end, so look at
    # the transaction every millisecond (a COMMIT takes about that long).
    while trans.is_active:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    if sync.get_transaction() is trans:
        log.warning("transactional enqueue: COMMIT failed; the sweeper sends what was stored")
        return
    for push in pushes:
        await _run(push)


def _start(loop: asyncio.AbstractEventLoop, pushes: list[Push]) -> None:
    for push in pushes:
        _keep(loop.create_task(_run(push)))


async def _run(push: Push) -> None:
    try:
        await push()
    except Exception:
        log.exception("transactional enqueue: push after commit failed; the sweeper will send")


def _keep(task: asyncio.Task[Any]) -> None:
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def pushes_done() -> None:
    """Wait for the pushes scheduled so far (tests, shutdown)."""
    while _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)
