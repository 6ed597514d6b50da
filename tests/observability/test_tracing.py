"""OpenTelemetry tracing: PRODUCER spans around enqueues, CONSUMER spans around runs,
their relation (parent by default, a link when configured), the messaging attributes,
one span per attempt; in this process (the SDK's in-memory exporter) and across
processes (a CLI runner whose app exports its spans to a file)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import SpanKind

import aqueue.otel
from aqueue import JobFailedError, Queue, Runner, RunnerConfig

from . import obs_tasks
from .conftest import ObsEnv, wait_for


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    yield exp, provider
    aqueue.otel.uninstrument()
    provider.shutdown()


@pytest.fixture
async def runner_for(obs: ObsEnv) -> AsyncIterator[Any]:
    """Starts an in-process runner for a queue; stops it (and closes the queue) after."""
    started: list[tuple[Runner, asyncio.Task[None], Queue]] = []

    async def start(q: Queue) -> Runner:
        r = Runner(q, RunnerConfig(handle_signals=False, lease=5, heartbeat=1))
        started.append((r, asyncio.create_task(r.run()), q))
        await asyncio.wait_for(r.started.wait(), 30)
        return r

    yield start
    for r, t, q in started:
        r.stop()
        await asyncio.wait_for(t, 30)
        await q.close()


def by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


def attrs(s: ReadableSpan) -> dict[str, Any]:
    return dict(s.attributes or {})


def ids(s: ReadableSpan) -> tuple[int, int]:
    ctx = s.get_span_context()
    assert ctx is not None
    return ctx.trace_id, ctx.span_id


async def settle(q: Queue, *jobs: Any) -> None:
    for j in jobs:
        try:
            await j.result(timeout=30, poll=0.05)
        except JobFailedError:
            pass


async def test_consumer_spans_are_children_of_the_producer(
    obs: ObsEnv, exporter: tuple[InMemorySpanExporter, TracerProvider], runner_for: Any
) -> None:
    exp, provider = exporter
    aqueue.otel.instrument(tracer_provider=provider)
    q = obs_tasks.register(obs.queue())
    tracer = provider.get_tracer("test")

    @q.task()
    async def nested() -> None:
        with tracer.start_as_current_span("inside the handler"):
            pass

    await runner_for(q)
    ok = await q.enqueue("ok", 1)
    flaky = await q.enqueue("flaky")
    boom = await q.enqueue("boom", "why")
    inner = await q.enqueue("nested")
    await settle(q, ok, flaky, boom, inner)
    await wait_for(
        lambda: len(by_kind(exp.get_finished_spans(), SpanKind.CONSUMER)) >= 5, 10, "5 runs"
    )
    spans = exp.get_finished_spans()
    producers = {attrs(s)["messaging.message.id"]: s for s in by_kind(spans, SpanKind.PRODUCER)}
    consumers: dict[str, list[ReadableSpan]] = {}
    for s in by_kind(spans, SpanKind.CONSUMER):
        consumers.setdefault(attrs(s)["messaging.message.id"], []).append(s)
    assert set(producers) == set(consumers) == {ok.id, flaky.id, boom.id, inner.id}

    for job_id, p in producers.items():
        assert p.name == f"send {q.name}"
        a = attrs(p)
        assert a["messaging.system"] == "aqueue"
        assert a["messaging.destination.name"] == q.name
        assert a["messaging.operation.type"] == "send"
        for c in consumers[job_id]:
            assert c.name == f"process {q.name}"
            assert c.parent is not None and c.parent.span_id == ids(p)[1]
            assert ids(c)[0] == ids(p)[0]  # one trace
            ca = attrs(c)
            assert ca["messaging.system"] == "aqueue"
            assert ca["messaging.destination.name"] == q.name
            assert ca["messaging.operation.type"] == "process"
            assert ca["messaging.operation.name"] == "process"

    (ok_run,) = consumers[ok.id]
    assert attrs(ok_run)["aqueue.task"] == "ok"
    assert attrs(ok_run)["aqueue.attempt"] == 1
    assert attrs(ok_run)["aqueue.outcome"] == "done"
    assert "error.type" not in attrs(ok_run)
    # a retry: a span per attempt, the first one failed and retried
    runs = sorted(consumers[flaky.id], key=lambda s: attrs(s)["aqueue.attempt"])
    assert [attrs(s)["aqueue.attempt"] for s in runs] == [1, 2]
    assert attrs(runs[0])["aqueue.outcome"] == "retried"
    assert attrs(runs[0])["error.type"] == "RuntimeError"
    assert runs[0].status.status_code is trace.StatusCode.ERROR
    assert attrs(runs[1])["aqueue.outcome"] == "done"
    (boom_run,) = consumers[boom.id]
    assert attrs(boom_run)["error.type"] == "ValueError"
    assert attrs(boom_run)["aqueue.outcome"] == "failed"
    assert any(e.name == "exception" for e in boom_run.events)
    # the handler's own span is a child of its run's span
    (handler_span,) = [s for s in spans if s.name == "inside the handler"]
    (nested_run,) = consumers[inner.id]
    assert handler_span.parent is not None and handler_span.parent.span_id == ids(nested_run)[1]


async def test_link_mode_and_enqueue_many(
    obs: ObsEnv, exporter: tuple[InMemorySpanExporter, TracerProvider], runner_for: Any
) -> None:
    exp, provider = exporter
    aqueue.otel.instrument(consumer="link", tracer_provider=provider)
    q = obs_tasks.register(obs.queue())
    await runner_for(q)
    jobs = await q.enqueue_many([("ok", (i,), {}) for i in range(3)])
    await settle(q, *jobs)
    await wait_for(
        lambda: len(by_kind(exp.get_finished_spans(), SpanKind.CONSUMER)) >= 3, 10, "3 runs"
    )
    spans = exp.get_finished_spans()
    (batch,) = by_kind(spans, SpanKind.PRODUCER)  # one span for the batch
    assert attrs(batch)["messaging.batch.message_count"] == 3
    assert attrs(batch)["aqueue.task"] == "ok"
    runs = by_kind(spans, SpanKind.CONSUMER)
    assert {attrs(s)["messaging.message.id"] for s in runs} == {j.id for j in jobs}
    for s in runs:
        assert s.parent is None  # a trace of its own ...
        assert ids(s)[0] != ids(batch)[0]
        assert [link.context.span_id for link in s.links] == [ids(batch)[1]]  # ... linked


async def test_enqueue_failure_ends_the_producer_span_with_the_error(
    obs: ObsEnv, exporter: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    exp, provider = exporter
    aqueue.otel.instrument(tracer_provider=provider)
    q = obs_tasks.register(obs.queue())
    try:
        with pytest.raises(aqueue.UnknownTaskError):
            await q.enqueue("no_such_task")
    finally:
        await q.close()
    (span,) = exp.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER
    assert attrs(span)["error.type"] == "UnknownTaskError"


async def test_spans_across_processes(
    obs: ObsEnv, exporter: tuple[InMemorySpanExporter, TracerProvider]
) -> None:
    """The producer here, the runner a CLI subprocess exporting its spans to a file:
    its run spans are children of the spans made here (the context travelled in SQL and
    the Redis message), a retry's attempts too."""
    exp, provider = exporter
    aqueue.otel.instrument(tracer_provider=provider)
    spans_file: Path = obs.tmp / "spans.jsonl"
    p = obs.run_cli("--lease", "5", extra_env={"AQT_SPANS": str(spans_file)})
    q = obs_tasks.register(obs.queue())
    try:
        ok = await q.enqueue("ok", 7)
        flaky = await q.enqueue("flaky")
        await settle(q, ok, flaky)

        def consumer_spans() -> list[dict[str, Any]]:
            if not spans_file.exists():
                return []
            lines = spans_file.read_text().splitlines()
            return [s for s in map(json.loads, lines) if s["kind"] == "CONSUMER"]

        runs = await wait_for(lambda: len(consumer_spans()) >= 3 and consumer_spans(), 20, "runs")
    finally:
        obs.stop(p)
        await q.close()
    producers = {
        attrs(s)["messaging.message.id"]: s
        for s in by_kind(exp.get_finished_spans(), SpanKind.PRODUCER)
    }
    assert set(producers) == {ok.id, flaky.id}
    for run in runs:
        producer = producers[run["attributes"]["messaging.message.id"]]
        assert (run["trace_id"], run["parent_span_id"]) == ids(producer)
        assert run["attributes"]["messaging.destination.name"] == q.name
    attempts = sorted(
        r["attributes"]["aqueue.attempt"] for r in runs if r["attributes"]["aqueue.task"] == "flaky"
    )
    assert attempts == [1, 2]


async def test_a_workflow_enqueue_is_one_producer_span(
    obs: ObsEnv, exporter: tuple[InMemorySpanExporter, TracerProvider], runner_for: Any
) -> None:
    """A chord's enqueue (one insert) is one PRODUCER span, as ``enqueue_many``'s batch:
    every job of the workflow, the callback included, runs in a CONSUMER span child of it."""
    exp, provider = exporter
    aqueue.otel.instrument(tracer_provider=provider)
    q = obs_tasks.register(obs.queue())
    await runner_for(q)
    ok = q.tasks["ok"]
    callback = await aqueue.chord(aqueue.group(ok.s(1), ok.s(2)), ok.s()).enqueue()
    assert await callback.result(timeout=30, poll=0.05) == [1, 2]
    await wait_for(
        lambda: len(by_kind(exp.get_finished_spans(), SpanKind.CONSUMER)) >= 3, 10, "3 runs"
    )
    spans = exp.get_finished_spans()
    (producer,) = by_kind(spans, SpanKind.PRODUCER)
    assert producer.name == f"send {q.name}"
    assert attrs(producer)["messaging.batch.message_count"] == 3
    runs = by_kind(spans, SpanKind.CONSUMER)
    assert len(runs) == 3 and callback.id in {attrs(s)["messaging.message.id"] for s in runs}
    for s in runs:
        assert s.parent is not None and s.parent.span_id == ids(producer)[1]
        assert ids(s)[0] == ids(producer)[0]


class CountingSampler(Sampler):
    """``ParentBased(ALWAYS_ON)`` that records the name of every span it is asked about."""

    def __init__(self) -> None:
        self.inner = ParentBased(ALWAYS_ON)
        self.asked: list[str] = []

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any
    ) -> Any:
        self.asked.append(name)
        return self.inner.should_sample(parent_context, trace_id, name, *args, **kw)

    def get_description(self) -> str:
        return "counting"


@pytest.mark.parametrize("runs", ["all", "sampled"])
async def test_runs_sampled_follows_the_producers_decision(
    obs: ObsEnv, runner_for: Any, runs: Any
) -> None:
    """Job A is enqueued in a sampled trace, job B inside a trace that is not sampled,
    job C without tracing (no context stored). Under ``runs="all"`` the three runs ask
    the sampler (B's is dropped by it: its parent is not sampled); under
    ``runs="sampled"`` (the default) B is stored with an empty context, and its run
    opens no span and asks no sampler. C's run is a root that the sampler decides."""
    exp, sampler = InMemorySpanExporter(), CountingSampler()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exp))
    try:
        q = obs_tasks.register(obs.queue())

        @q.task()
        async def where() -> list[Any]:
            """The handler's current span context: its trace id and whether it is sampled."""
            current = trace.get_current_span().get_span_context()
            return [format(current.trace_id, "032x"), current.trace_flags.sampled]

        c = await q.enqueue("where")  # before tracing: no context stored
        aqueue.otel.instrument(tracer_provider=provider, runs=runs)
        await runner_for(q)
        a = await q.enqueue("ok", 1)
        not_sampled = trace.NonRecordingSpan(
            trace.SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=trace.TraceFlags(0))
        )
        with trace.use_span(not_sampled):
            b = await q.enqueue("where")
        assert await a.result(timeout=30, poll=0.05) == 1
        b_saw = await b.result(timeout=30, poll=0.05)
        c_saw = await c.result(timeout=30, poll=0.05)
        await wait_for(
            lambda: len(by_kind(exp.get_finished_spans(), SpanKind.CONSUMER)) == 2,
            10,
            "the runs of A and C",
        )
        runs_seen = by_kind(exp.get_finished_spans(), SpanKind.CONSUMER)
        assert sorted(attrs(s)["messaging.message.id"] for s in runs_seen) == sorted([a.id, c.id])
        (c_run,) = (s for s in runs_seen if attrs(s)["messaging.message.id"] == c.id)
        assert c_run.parent is None
        assert c_saw == [format(c_run.context.trace_id, "032x"), True]
        # B's handler: in B's trace, not sampled (all), or in no trace (sampled).
        assert b_saw == [format(0x1234 if runs == "all" else 0, "032x"), False]
        a_rec, b_rec, c_rec = await a.info(), await b.info(), await c.info()
        assert '"tc":{"traceparent":' in (a_rec.payload or "")
        b_context = '"tc":{"traceparent":' if runs == "all" else '"tc":{}'
        assert b_context in (b_rec.payload or "")
        assert '"tc":' not in (c_rec.payload or "")
        assert sampler.asked.count(f"process {q.name}") == (3 if runs == "all" else 2)
    finally:
        aqueue.otel.uninstrument()
        provider.shutdown()


def test_runs_is_checked() -> None:
    with pytest.raises(ValueError, match="runs must be"):
        aqueue.otel.instrument(runs="some")  # type: ignore[arg-type]
