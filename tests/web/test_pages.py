"""The dashboard's pages over a driven queue: what they show, filters and keyset paging,
escaping, and that no secret reaches a page."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx

import aqueue
import aqueue.web
from aqueue.testing import Driver
from aqueue.web._format import approx

from .conftest import TOKEN, Client, wait_for


async def test_overview_shows_counts_backlog_runners_and_throughput(
    driven: Driver, client: Client
) -> None:
    q = driven.queue
    await q.enqueue("add", 1, 2)
    await q.enqueue("boom")
    await driven.drain()
    await q.options(delay=60).enqueue("add", 3, 4)
    r = await client().get("/")
    assert r.status_code == 200
    html = r.text
    assert re.search(r'<span class="n">1</span><span class="l">done</span>', html)
    assert re.search(r'<span class="n">1</span><span class="l">failed</span>', html)
    assert re.search(r'<span class="n">1</span><span class="l">todo</span>', html)
    assert "runners alive" in html and 'id="throughput"' in html
    assert "failed 1: failure rate 50.0 %" in html
    assert r.headers["content-security-policy"].startswith("default-src 'self'")


async def test_jobs_list_filters_and_keyset_pages(driven: Driver, client: Client) -> None:
    q = driven.queue
    jobs = [await q.enqueue("add", i, i) for i in range(120)]
    await q.enqueue("boom", "needle")
    await driven.drain()
    c = client()
    page1 = (await c.get("/jobs", params={"task": "add"})).text
    ids1 = re.findall(r'href="/jobs/([^"?]+)"', page1)
    newest_first = sorted((j.id for j in jobs), reverse=True)
    assert ids1 == newest_first[:50]
    older = re.search(r'id="older" href="([^"]+)"', page1)
    assert older is not None
    page2 = (await c.get(older.group(1).replace("&amp;", "&"))).text
    ids2 = re.findall(r'href="/jobs/([^"?]+)"', page2)
    assert ids2 == newest_first[50:100]
    failed = (await c.get("/jobs", params={"status": "failed", "text": "needle"})).text
    assert len(re.findall(r'href="/jobs/([^"?]+)"', failed)) == 1
    bad = await c.get("/jobs", params={"status": "nope"})
    assert bad.status_code == 400 and "unknown job status" in bad.text
    bad = await c.get("/jobs", params={"from": "yesterday"})
    assert bad.status_code == 400 and "is not a time" in bad.text


async def test_job_detail_shows_error_traceback_and_never_the_lease_token(
    driven: Driver, client: Client
) -> None:
    q = driven.queue
    job = await q.enqueue("boom", "x")
    await driven.drain()
    html = (await client().get(f"/jobs/{job.id}")).text
    assert "ValueError" in html and "disk full x" in html and "Traceback" in html
    assert "attempts" in html and "stalls" in html
    running = await q.enqueue("add", 1, 1)
    rec = await running.info()
    assert (await client().get(f"/jobs/{running.id}")).status_code == 200
    assert rec.lease_token is None or rec.lease_token not in html
    assert (await client().get("/jobs/no-such-job")).status_code == 404


async def test_a_lease_token_is_on_no_page(driven: Driver, client: Client) -> None:
    """A job running (leased, with its token) shows its owner, never its token."""
    job = await driven.queue.enqueue("hold")

    async def running() -> bool:
        return (await job.info()).status == "running"

    await wait_for(running)
    rec = await job.info()
    assert rec.lease_token and rec.lease_owner
    c = client()
    for path in (f"/jobs/{job.id}", "/jobs", "/", "/runners", f"/jobs?job_id={job.id}"):
        html = (await c.get(path)).text
        assert rec.lease_token not in html, path
    assert rec.lease_owner in (await c.get(f"/jobs/{job.id}")).text
    api = await client(None, authorization=f"Bearer {TOKEN}").get(f"/api/jobs/{job.id}")
    assert rec.lease_token not in api.text and api.json()["lease_owner"] == rec.lease_owner


async def test_script_in_arguments_renders_inert(driven: Driver, client: Client) -> None:
    q = driven.queue
    evil = "<script>alert(1)</script>"
    job = await q.enqueue("boom", evil)
    await driven.drain()
    c = client()
    for path in (f"/jobs/{job.id}", "/jobs", "/failed", f"/jobs?text={evil}"):
        html = (await c.get(path)).text
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "\\u003c" in html, path


async def test_runners_and_schedules_pages(driven: Driver, client: Client) -> None:
    c = client()
    runners = (await c.get("/runners")).text
    assert driven.runner.id in runners
    schedules = (await c.get("/schedules")).text
    assert "tidy" in schedules and "every 300 s" in schedules


async def test_a_search_reads_a_bounded_window_then_continues_older(driven: Driver) -> None:
    q = driven.queue
    needle = await q.enqueue("boom", "needle")
    newer = [await q.enqueue("add", i, i) for i in range(12)]
    await driven.drain()
    app = aqueue.web.app(q, auth=aqueue.web.allow_all)
    app.state.aqueue_web.scan = 5  # a window of 5 jobs per page
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        path = "/jobs?" + urlencode({"text": "needle"})
        seen: list[str] = []
        for _ in range(4):  # 13 jobs: the needle is in the third window
            html = (await c.get(path)).text
            seen += re.findall(r'href="/jobs/([^"?]+)"', html)
            if seen:
                break
            assert 'id="scan-note"' in html and "reads 5 jobs per page at most" in html
            more = re.search(r'<a href="([^"]+)">search older</a>', html)
            assert more is not None
            path = more.group(1).replace("&amp;", "&")
        assert seen == [needle.id]
        assert len(newer) == 12
        # the same search over a window that holds every job: one page, no note
        app.state.aqueue_web.scan = 100
        html = (await c.get("/jobs?" + urlencode({"text": "needle"}))).text
        assert re.findall(r'href="/jobs/([^"?]+)"', html) == [needle.id]
        assert 'id="scan-note"' not in html


def test_an_estimated_count_is_marked_so() -> None:
    assert [approx(n) for n in (999, 1_500, 250_000, 1_049_000)] == [
        "≈999",
        "≈2k",
        "≈250k",
        "≈1.0M",
    ]
