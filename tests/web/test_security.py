"""Who may do what: authentication, the read-only role, CSRF on every action, and the
actions themselves (one job and bulk) when every check passes."""

from __future__ import annotations

import re

import httpx

from aqueue.testing import Driver

from .conftest import Client

SAME = {"sec-fetch-site": "same-origin"}


async def csrf_of(c: httpx.AsyncClient, path: str) -> str:
    html = (await c.get(path)).text
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m is not None, "no CSRF field on " + path
    return m.group(1)


async def test_every_page_and_api_needs_credentials(driven: Driver, client: Client) -> None:
    job = await driven.queue.enqueue("add", 1, 2)
    anon = client(None)
    for path in ("/", "/jobs", f"/jobs/{job.id}", "/failed", "/runners", "/schedules",
                 "/static/app.css", "/api/openapi.json", f"/api/jobs/{job.id}"):  # fmt: skip
        r = await anon.get(path)
        assert r.status_code == 401, path
    r = await anon.get("/")
    assert r.headers["www-authenticate"].startswith("Basic")
    wrong = client(None, authorization="Basic YWRtaW46bm9wZQ==")  # admin:nope
    assert (await wrong.get("/")).status_code == 401
    assert (
        await client(None, authorization="Bearer wrong-token-xxxxxxxx").get("/")
    ).status_code == 401
    assert (await anon.post(f"/jobs/{job.id}/cancel")).status_code == 401
    assert (await driven.queue.job(job.id).info()).status == "todo"


async def test_read_only_sees_pages_without_actions_and_cannot_act(
    driven: Driver, client: Client
) -> None:
    job = await driven.queue.enqueue("boom")
    await driven.drain()
    viewer = client("viewer")
    page = await viewer.get(f"/jobs/{job.id}")
    assert page.status_code == 200 and "read-only" in page.text
    assert 'id="action-retry"' not in page.text and 'name="csrf"' not in page.text
    failed = (await viewer.get("/failed")).text
    assert "bulk-form" not in failed and job.id in failed
    # even with a valid token (taken from an admin's page by the same browser) it is refused
    admin = client()
    token = await csrf_of(admin, f"/jobs/{job.id}")
    viewer.cookies.set("aqueue_csrf", admin.cookies["aqueue_csrf"])
    r = await viewer.post(f"/jobs/{job.id}/retry", data={"csrf": token}, headers=SAME)
    assert r.status_code == 403
    assert (await driven.queue.job(job.id).info()).status == "failed"


async def test_actions_need_same_origin_and_the_token_of_the_cookie(
    driven: Driver, client: Client
) -> None:
    job = await driven.queue.enqueue("boom")
    await driven.drain()
    c = client()
    token = await csrf_of(c, f"/jobs/{job.id}")
    url = f"/jobs/{job.id}/retry"
    refusals = [
        ({}, {"csrf": token}),  # neither Sec-Fetch-Site nor Origin
        ({"sec-fetch-site": "cross-site"}, {"csrf": token}),
        ({"sec-fetch-site": "same-site"}, {"csrf": token}),
        ({"origin": "http://evil.example"}, {"csrf": token}),
        (SAME, {}),  # no token
        (SAME, {"csrf": "0" * 64}),  # a token of another cookie
    ]
    for headers, data in refusals:
        r = await c.post(url, data=data, headers=headers)
        assert r.status_code == 403, (headers, data)
        assert "did not come from the dashboard" in r.text
    other = client()  # another browser: its own cookie, so the first one's token fails
    await other.get("/")
    assert (await other.post(url, data={"csrf": token}, headers=SAME)).status_code == 403
    assert (await driven.queue.job(job.id).info()).status == "failed"
    # the same browser, same origin, its token: done
    r = await c.post(url, data={"csrf": token}, headers={"origin": "http://testserver"})
    assert r.status_code == 303 and r.headers["location"].startswith(f"/jobs/{job.id}?msg=")
    await driven.drain()
    rec = await driven.queue.job(job.id).info()
    assert rec.status == "failed" and rec.attempts == 1  # it ran again, and failed again


async def test_cancel_and_delete_one_job(driven: Driver, client: Client) -> None:
    q = driven.queue
    todo = await q.options(delay=600).enqueue("add", 1, 2)
    c = client()
    token = await csrf_of(c, f"/jobs/{todo.id}")
    r = await c.post(f"/jobs/{todo.id}/cancel", data={"csrf": token}, headers=SAME)
    assert r.status_code == 303 and (await todo.info()).status == "cancelled"
    r = await c.post(f"/jobs/{todo.id}/delete", data={"csrf": token}, headers=SAME)
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs?")
    assert (await c.get(f"/jobs/{todo.id}")).status_code == 404
    assert (await c.post(f"/jobs/{todo.id}/explode", data={"csrf": token})).status_code == 404


async def test_bulk_actions_on_a_selection_and_on_the_filter(
    driven: Driver, client: Client
) -> None:
    q = driven.queue
    jobs = [await q.enqueue("boom", f"n{i}") for i in range(6)]
    await q.enqueue("add", 1, 1)
    await driven.drain()
    c = client()
    token = await csrf_of(c, "/failed")
    picked = [jobs[0].id, jobs[1].id]
    r = await c.post(
        "/bulk",
        data={"csrf": token, "action": "delete:selected", "ids": picked, "back": "/failed"},
        headers=SAME,
    )
    assert r.status_code == 303 and "2+job" in r.headers["location"]
    assert len(driven.jobs("failed")) == 4
    # every failed job whose arguments or error holds "n5": one
    r = await c.post(
        "/bulk",
        data={"csrf": token, "action": "retry:filter", "text": "n5", "back": "/failed"},
        headers=SAME,
    )
    assert r.status_code == 303 and "1+job" in r.headers["location"]
    assert "text=n5" in r.headers["location"]
    assert (await jobs[5].info()).status == "todo"
    r = await c.post(
        "/bulk", data={"csrf": token, "action": "delete:filter"}, headers=SAME
    )  # every failed job left
    assert r.status_code == 303 and "3+job" in r.headers["location"]
    assert driven.jobs("failed") == [] and len(driven.jobs("done")) == 1
    r = await c.post("/bulk", data={"action": "delete:filter"}, headers=SAME)
    assert r.status_code == 403


async def test_jobs_page_bulk_cancel_by_filter(driven: Driver, client: Client) -> None:
    q = driven.queue
    later = [await q.options(delay=600).enqueue("add", i, i) for i in range(3)]
    other = await q.options(delay=600).enqueue("boom", "keep")
    c = client()
    page = (await c.get("/jobs", params={"task": "add"})).text
    assert "Cancel all" in page and "(task=add)" in page
    token = await csrf_of(c, "/jobs")
    r = await c.post(
        "/bulk",
        data={"csrf": token, "action": "cancel:filter", "task": "add", "back": "/jobs"},
        headers=SAME,
    )
    assert r.status_code == 303 and "3+job" in r.headers["location"]
    assert r.headers["location"].startswith("/jobs?") and "task=add" in r.headers["location"]
    assert {(await j.info()).status for j in later} == {"cancelled"}
    assert (await other.info()).status == "todo"
