"""OpenTelemetry tracing of enqueues and runs, both ways a run's span can relate to its
enqueue's (a child, or a trace of its own with a link).

    python examples/tracing.py

Needs ``pip install 'aqueue[otel]' opentelemetry-sdk`` (the SDK only for the in-memory
exporter this program reads its spans from; an application configures its own provider
and exporter). Uses AQUEUE_REDIS_URL / AQUEUE_DATABASE_URL when set, else the embedded
default under ./.aqueue/. tests/docs/test_examples_docs.py runs it, so the block of
docs/operations.md taken from here is tested.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import aqueue.otel
from aqueue import Queue, RunnerConfig

queue = Queue("traced", table=f"traced_{uuid.uuid4().hex[:8]}", key_prefix="traced")
exporter = InMemorySpanExporter()


@queue.task
async def resize(image: str) -> str:
    return image


def spans(kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


async def enqueue_and_run() -> tuple[ReadableSpan, ReadableSpan]:
    """One job enqueued and run: its PRODUCER span and its CONSUMER span."""
    exporter.clear()
    await resize.enqueue("cat.png")
    await queue.run(RunnerConfig(burst=True, handle_signals=False))
    [send] = spans(SpanKind.PRODUCER)
    [process] = spans(SpanKind.CONSUMER)
    assert (send.name, process.name) == ("send traced", "process traced")
    return send, process


async def main() -> int:
    provider = TracerProvider()  # the application's own, with its exporter
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    await queue.connect()

    aqueue.otel.instrument()  # consumer spans are children of the enqueue's
    send, process = await enqueue_and_run()
    assert send.context is not None
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context is not None
    assert process.context.trace_id == send.context.trace_id

    aqueue.otel.instrument(consumer="link")  # ... or traces of their own, linked to it
    send, process = await enqueue_and_run()
    assert send.context is not None
    assert process.context is not None
    assert process.parent is None
    assert process.context.trace_id != send.context.trace_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]

    aqueue.otel.uninstrument()
    print("tracing ok: a child of the enqueue's span, then a trace of its own linked to it")
    await queue.purge()
    be = await queue._backend()
    await be.store.drop_schema()
    await queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
