"""The observability tests' app (imported by the CLI runner as ``obs_app:queue``; its
settings come from environment variables, so each test has its own queue, table and
key prefix). With ``AQT_SPANS`` set it configures the OpenTelemetry SDK to write every
finished span as one JSON line to that file, and instruments aqueue."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from obs_tasks import register  # the runner's path has this directory

from aqueue import Queue

queue = register(
    Queue(
        os.environ["AQT_QUEUE"],
        redis_url=os.environ["AQT_REDIS_URL"],
        database_url=os.environ["AQT_DATABASE_URL"],
        table=os.environ["AQT_TABLE"],
        key_prefix=os.environ["AQT_PREFIX"],
    )
)

if os.environ.get("AQT_SPANS"):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    import aqueue.otel

    class _JsonLines(SpanExporter):
        def __init__(self, path: str) -> None:
            self._path = path

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(self._path, "a", encoding="utf-8") as f:
                for s in spans:
                    f.write(json.dumps(_as_dict(s)) + "\n")
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

    def _as_dict(s: ReadableSpan) -> dict[str, Any]:
        ctx, parent = s.get_span_context(), s.parent
        assert ctx is not None
        return {
            "name": s.name,
            "kind": s.kind.name,
            "trace_id": ctx.trace_id,
            "span_id": ctx.span_id,
            "parent_span_id": parent.span_id if parent is not None else None,
            "links": [link.context.span_id for link in s.links],
            "attributes": dict(s.attributes or {}),
            "status": s.status.status_code.name,
        }

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_JsonLines(os.environ["AQT_SPANS"])))
    trace.set_tracer_provider(provider)
    aqueue.otel.instrument(consumer=os.environ.get("AQT_CONSUMER", "parent"))  # type: ignore[arg-type]
