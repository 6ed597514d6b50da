"""OpenTelemetry tracing (``pip install aqueue[otel]``: the API only; the application
configures the SDK and its exporters).

After :func:`instrument`, every enqueue of this process opens a PRODUCER span
(``send <queue>``) whose context is stored with the job (its run options, ``"tc"``: so in
the row and in every Redis message of the job), and every handler run opens a CONSUMER
span (``process <queue>``) whose parent is that context (``consumer="parent"``, the
default) or which starts its own trace with a link to it (``consumer="link"``). Each
attempt is a span of its own (``aqueue.attempt``), so retries show as siblings.
``enqueue_many`` opens one PRODUCER span for the batch (``messaging.batch.message_count``):
its jobs' runs are all its children.

Attributes follow the messaging semantic conventions: ``messaging.system`` = ``aqueue``,
``messaging.destination.name`` (the queue), ``messaging.message.id`` (the job id),
``messaging.operation.type``/``messaging.operation.name`` (``send``, ``process``),
``error.type`` on a failure; plus ``aqueue.task``, ``aqueue.attempt`` and
``aqueue.outcome`` (done, failed, retried, cancelled, manual).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from . import _observe
from ._message import Message
from ._models import JobStatus, NewJob

__all__ = ["instrument", "uninstrument"]

_OUTCOMES = {JobStatus.DONE: "done", JobStatus.FAILED: "failed", JobStatus.TODO: "retried"}


class _Send:
    __slots__ = ("_span", "carrier")

    def __init__(self, span: trace.Span, sampled_only: bool) -> None:
        self._span = span
        self.carrier: dict[str, str] | None
        ctx = span.get_span_context()
        if sampled_only and ctx.is_valid and not ctx.trace_flags.sampled:
            # runs="sampled": a job enqueued in a trace that is not sampled carries an
            # empty context ({}), and its runs open no span. (Without an SDK the span is
            # not valid: nothing is stored, and the runner's sampler decides.)
            self.carrier = {}
            return
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        self.carrier = carrier or None

    def sent(self, jobs: Sequence[NewJob]) -> None:
        span = self._span
        if len(jobs) == 1:
            span.set_attribute("messaging.message.id", jobs[0].id)
            span.set_attribute("aqueue.task", jobs[0].task)
        else:
            span.set_attribute("messaging.batch.message_count", len(jobs))
            tasks = sorted({j.task for j in jobs})
            if len(tasks) == 1:
                span.set_attribute("aqueue.task", tasks[0])

    def close(self, error: BaseException | None) -> None:
        if error is not None:
            _failed(self._span, error)
        self._span.end()


class _Run:
    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        # The handler's own spans are children of this one.
        self._token = otel_context.attach(trace.set_span_in_context(span))

    def close(self, status: JobStatus | None, error: BaseException | None) -> None:
        span = self._span
        if status is not None:
            outcome = _OUTCOMES.get(status, status.value)
        else:
            outcome = "manual" if error is None else "cancelled"
        span.set_attribute("aqueue.outcome", outcome)
        if error is not None:
            _failed(span, error)
        otel_context.detach(self._token)
        span.end()


class _Untraced:
    """The run of a job whose enqueue span was not sampled, under ``runs="sampled"``."""

    __slots__ = ()

    def close(self, status: JobStatus | None, error: BaseException | None) -> None:
        return None


_UNTRACED = _Untraced()


def _failed(span: trace.Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__qualname__)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))


class TracingObserver:
    """The :class:`aqueue._observe.Observer` that opens the spans."""

    def __init__(
        self,
        tracer: trace.Tracer,
        consumer: Literal["parent", "link"],
        runs: Literal["all", "sampled"] = "sampled",
    ) -> None:
        self._tracer = tracer
        self._link = consumer == "link"
        self._sampled_only = runs == "sampled"
        # A linked run starts a trace of its own, sampled on its own: it does not follow
        # the producer's decision.
        self._follow_producer = self._sampled_only and not self._link
        self._last: tuple[tuple[tuple[str, str], ...], otel_context.Context] | None = None

    def _produced(self, carrier: object) -> otel_context.Context | None:
        """The producer's context from a job's carrier. The last one is kept: the jobs of
        an ``enqueue_many`` share theirs, and an extract costs ~4 µs."""
        if not isinstance(carrier, dict) or not carrier:
            return None
        key = tuple(carrier.items())
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        produced = propagate.extract(carrier)
        self._last = (key, produced)
        return produced

    def sending(self, queue: str) -> _Send:
        span = self._tracer.start_span(
            f"send {queue}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "aqueue",
                "messaging.destination.name": queue,
                "messaging.operation.type": "send",
                "messaging.operation.name": "send",
            },
        )
        return _Send(span, self._sampled_only)

    def running(self, queue: str, msg: Message, runner_id: str) -> _Run | _Untraced:
        carrier = msg.options.get(_observe.TRACE_OPTION)
        if self._follow_producer and carrier == {}:  # enqueued in a trace not sampled
            return _UNTRACED
        produced = self._produced(carrier)
        links: list[Link] = []
        parent = produced
        if self._link:
            parent = otel_context.Context()  # a trace of its own
            if produced is not None:
                span_context = trace.get_current_span(produced).get_span_context()
                if span_context.is_valid:
                    links.append(Link(span_context))
        span = self._tracer.start_span(
            f"process {queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "aqueue",
                "messaging.destination.name": queue,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.message.id": msg.id,
                "messaging.consumer.group.name": queue,
                "aqueue.task": msg.task,
                "aqueue.attempt": msg.attempts + 1,
                "aqueue.runner": runner_id,
            },
        )
        return _Run(span)

    def reclaimed(self, queue: str, task: str) -> None:
        return None

    def finish_rejected(self, queue: str) -> None:
        return None


_installed: TracingObserver | None = None


def instrument(
    *,
    consumer: Literal["parent", "link"] = "parent",
    runs: Literal["all", "sampled"] = "sampled",
    tracer_provider: trace.TracerProvider | None = None,
) -> None:
    """Trace this process's enqueues and handler runs (every queue). ``consumer``: a
    run's span is a child of its enqueue's span (``parent``) or starts a trace of its
    own linked to it (``link``: for traces that should not span hours of queueing).
    ``runs="sampled"``, the default, follows the producer's decision: a job whose
    enqueue span was not sampled is stored with an empty trace context, and its runs
    open no span and cost next to nothing; every other run (a sampled enqueue's, or a
    job enqueued without tracing) opens a span and the sampler decides. ``runs="all"``:
    every run opens a span and the sampler decides (for a sampler that keeps some runs
    of unsampled enqueues), and unsampled enqueues store their context. With
    ``consumer="link"`` every run opens a span (its trace is its own). Calling it again
    replaces the previous settings."""
    global _installed
    if consumer not in ("parent", "link"):
        raise ValueError("consumer must be 'parent' or 'link'")
    if runs not in ("all", "sampled"):
        raise ValueError("runs must be 'all' or 'sampled'")
    uninstrument()
    tracer = trace.get_tracer("aqueue", tracer_provider=tracer_provider)
    _installed = TracingObserver(tracer, consumer, runs)
    _observe.install(_installed)


def uninstrument() -> None:
    """Stop tracing (spans already open end as usual)."""
    global _installed
    if _installed is not None:
        _observe.uninstall(_installed)
        _installed = None
