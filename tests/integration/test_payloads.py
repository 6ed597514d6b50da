"""Large arguments through a real runner on every SQL store: a compressible 100 KB
argument is stored compressed (the row holds a fraction of it), the handler gets it as
given, and the admin views (CLI document, dashboard) show the arguments, not the
compressed text; with ``compress_over=None`` the row holds the JSON as before."""

from __future__ import annotations

from typing import Any

from aqueue import JobStatus, Runner, RunnerConfig
from aqueue._cli.render import job_doc
from aqueue.web._format import arguments

from ..conftest import QueueFactory

DOC = {"rows": [{"id": i, "name": f"customer {i}", "city": "Lyon"} for i in range(2500)]}


async def test_a_large_argument_is_stored_compressed_and_reaches_the_handler(
    make_queue: QueueFactory,
) -> None:
    q = make_queue()
    got: list[Any] = []

    @q.task
    async def load(doc: dict[str, Any], *, label: str) -> int:
        got.append((doc, label))
        return len(doc["rows"])

    job = await load.enqueue(DOC, label="batch 1")
    rec = await job.info()
    assert rec.payload is not None and rec.payload.startswith('{"z":')
    assert len(rec.payload) < 20_000 < len(str(DOC))
    await Runner(q, RunnerConfig(burst=True, handle_signals=False)).run()
    assert got == [(DOC, "batch 1")]
    assert await job.result() == 2500
    rec = await job.info()
    assert rec.status is JobStatus.DONE
    doc = job_doc(rec)
    assert (doc["args"], doc["kwargs"]) == ([DOC], {"label": "batch 1"})
    assert arguments(rec)[:2] == ([DOC], {"label": "batch 1"})


async def test_without_compression_the_row_holds_the_json(make_queue: QueueFactory) -> None:
    q = make_queue(compress_over=None)

    @q.task
    async def load(doc: dict[str, Any]) -> int:
        return len(doc["rows"])

    job = await load.enqueue(DOC)
    rec = await job.info()
    assert rec.payload is not None and rec.payload.startswith('{"a":[{"rows":')
    await Runner(q, RunnerConfig(burst=True, handle_signals=False)).run()
    assert await job.result() == 2500


async def test_long_text_full_of_escapes_is_stored_and_read_back_exactly(
    make_queue: QueueFactory,
) -> None:
    """Long text goes to MySQL as a literal aqueue writes itself: every character that
    needs an escape, in the stored arguments (plain and compressed) and in the result."""
    text = ("\\'\"\0\n\r\x1a%s %% é€😀 " * 400) + "\\"
    for compress_over in (None, 4096):
        q = make_queue(compress_over=compress_over)

        @q.task
        async def echo(value: str) -> str:
            return value + value[::-1]

        job = await echo.enqueue(text)
        rec = await job.info()
        assert rec.payload is not None
        assert rec.payload.startswith('{"z":' if compress_over else '{"a":')
        await Runner(q, RunnerConfig(burst=True, handle_signals=False)).run()
        assert await job.result() == text + text[::-1]
        assert job_doc(await job.info())["args"] == [text]
