"""Observation hooks: the few points where the producer and the runner tell an installed
:class:`Observer` (metrics: ``aqueue.metrics``; tracing: ``aqueue.otel``) what happens to
jobs. Nothing is installed by default: every call site reads :data:`active` once and
does nothing more when it is ``None``, so the hot path pays one attribute read.

The hooks:

- ``sending(queue)`` around an enqueue (one for ``enqueue_many``'s whole batch): its
  ``carrier`` (a trace context, ``{}`` for a trace that is not sampled, or ``None``:
  nothing to store) is stored in the jobs' run options (``"tc"``)
  and so travels with the row and the message; ``sent(jobs)`` once they are made,
  ``close(error)`` when the enqueue returns or raises;
- ``running(queue, msg, runner_id)`` around a handler's run, ``close(status, error)``
  after it (``error`` is the handler's exception; status ``None`` with a
  ``CancelledError``: the runner stopped it; with no error: a manual-commit task);
- ``reclaimed(queue, task)``: a job whose lease expired taken back by the reclaimer;
- ``finish_rejected(queue)``: an outcome refused by SQL (the lease token was revoked).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol, TypeVar

from ._message import Message
from ._models import JobStatus, NewJob

TRACE_OPTION = "tc"
"""The run option (payload ``"o"``) holding the producer's trace context."""


class Sending(Protocol):
    carrier: dict[str, str] | None

    def sent(self, jobs: Sequence[NewJob]) -> None: ...

    def close(self, error: BaseException | None) -> None: ...


class Running(Protocol):
    def close(self, status: JobStatus | None, error: BaseException | None) -> None: ...


class Observer(Protocol):
    def sending(self, queue: str) -> Sending: ...

    def running(self, queue: str, msg: Message, runner_id: str) -> Running: ...

    def reclaimed(self, queue: str, task: str) -> None: ...

    def finish_rejected(self, queue: str) -> None: ...


active: Observer | None = None
"""What the call sites tell; ``None`` (the default) when nothing is installed."""

_installed: list[Observer] = []


def install(observer: Observer) -> None:
    """Add ``observer`` (once) to what the call sites tell."""
    global active
    if observer not in _installed:
        _installed.append(observer)
    active = _installed[0] if len(_installed) == 1 else _Fanout(tuple(_installed))


def uninstall(observer: Observer) -> None:
    global active
    if observer in _installed:
        _installed.remove(observer)
    if not _installed:
        active = None
    else:
        active = _installed[0] if len(_installed) == 1 else _Fanout(tuple(_installed))


class _Fanout:
    """Several observers (metrics and tracing) told in turn."""

    def __init__(self, observers: tuple[Observer, ...]) -> None:
        self._observers = observers

    def sending(self, queue: str) -> Sending:
        return _FanSending([o.sending(queue) for o in self._observers])

    def running(self, queue: str, msg: Message, runner_id: str) -> Running:
        return _FanRunning([o.running(queue, msg, runner_id) for o in self._observers])

    def reclaimed(self, queue: str, task: str) -> None:
        for o in self._observers:
            o.reclaimed(queue, task)

    def finish_rejected(self, queue: str) -> None:
        for o in self._observers:
            o.finish_rejected(queue)


class _FanSending:
    def __init__(self, scopes: list[Sending]) -> None:
        self._scopes = scopes
        carriers = [s.carrier for s in scopes if s.carrier is not None]
        self.carrier = carriers[0] if carriers else None

    def sent(self, jobs: Sequence[NewJob]) -> None:
        for s in self._scopes:
            s.sent(jobs)

    def close(self, error: BaseException | None) -> None:
        for s in reversed(self._scopes):
            s.close(error)


class _FanRunning:
    def __init__(self, scopes: list[Running]) -> None:
        self._scopes = scopes

    def close(self, status: JobStatus | None, error: BaseException | None) -> None:
        for s in reversed(self._scopes):
            s.close(status, error)


class _Outcome(Protocol):
    @property
    def status(self) -> JobStatus | None: ...

    @property
    def exc(self) -> BaseException | None: ...


OutcomeT = TypeVar("OutcomeT", bound=_Outcome)


async def observed_run(
    observer: Observer, queue: str, msg: Message, runner_id: str, run: Awaitable[OutcomeT]
) -> OutcomeT:
    """Await a handler's run (``run``, not started yet) inside ``running``: a tracing
    observer's span is the current one while the handler runs."""
    scope = observer.running(queue, msg, runner_id)
    try:
        outcome = await run
    except BaseException as exc:
        scope.close(None, exc)  # a CancelledError: the runner stopped the handler
        raise
    scope.close(outcome.status, outcome.exc)
    return outcome


def due_seconds_ago(msg: Message, now_us: int) -> float | None:
    """Seconds since ``msg``'s job became due (enqueued, or its ``run_at``): ``None`` for
    a message written before the due time was carried (``"d"``)."""
    if not msg.due:
        return None
    return max(0.0, now_us / 1e6 - msg.due / 1e3)
