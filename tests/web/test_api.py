"""The HTTP API under /api (in-process, over a driven queue): enqueue, read, cancel,
the bearer token, errors, and the OpenAPI document."""

from __future__ import annotations

from aqueue.testing import Driver

from .conftest import TOKEN, Client, wait_for

BEARER = {"authorization": f"Bearer {TOKEN}"}


async def test_enqueue_then_read_the_result(driven: Driver, client: Client) -> None:
    api = client(None, **BEARER)
    r = await api.post("/api/jobs", json={"task": "add", "args": [2, 3]})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "todo" and job["args"] == [2, 3] and "lease_token" not in job
    assert r.headers["location"] == f"/api/jobs/{job['id']}"

    async def done() -> bool:
        await driven.drain()
        return (await api.get(f"/api/jobs/{job['id']}")).json()["status"] == "done"

    await wait_for(done)
    assert (await api.get(f"/api/jobs/{job['id']}")).json()["result"] == 5


async def test_options_kwargs_and_cancel(driven: Driver, client: Client) -> None:
    api = client(None, **BEARER)
    body = {"task": "add", "kwargs": {"a": 1, "b": 2}, "options": {"delay": 600, "job_id": "j-1"}}
    r = await api.post("/api/jobs", json=body)
    assert (
        r.status_code == 201 and r.json()["id"] == "j-1" and r.json()["kwargs"] == {"a": 1, "b": 2}
    )
    r = await api.post("/api/jobs/j-1/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] is True
    assert r.json()["job"]["status"] == "cancelled"
    r = await api.post("/api/jobs/j-1/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] is False
    assert (await api.get("/api/jobs/nope")).status_code == 404
    assert (await api.post("/api/jobs/nope/cancel")).status_code == 404


async def test_bad_requests_are_refused_with_a_reason(driven: Driver, client: Client) -> None:
    api = client(None, **BEARER)
    cases = [
        (b"not json", 400),
        (b'["add"]', 422),
        (b'{"task": "add", "args": {"a": 1}}', 422),
        (b'{"task": "add", "options": {"colour": "red"}}', 422),
        (b'{"task": "add", "options": {"delay": -1}}', 422),
        (b'{"task": "bad name!"}', 404),
    ]
    for body, status in cases:
        r = await api.post("/api/jobs", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]


async def test_the_api_takes_only_a_bearer_token(driven: Driver, client: Client) -> None:
    job = await driven.queue.enqueue("add", 1, 1)
    # basic auth (a browser's ambient credentials) does not reach the API
    admin = client("admin")
    assert (await admin.post("/api/jobs", json={"task": "add"})).status_code == 401
    assert (await admin.post(f"/api/jobs/{job.id}/cancel")).status_code == 401
    assert (await client(None, authorization="Bearer nope-nope-nope-nope").get(
        f"/api/jobs/{job.id}"
    )).status_code == 401  # fmt: skip
    assert (await job.info()).status == "todo"


async def test_openapi_document(driven: Driver, client: Client) -> None:
    doc = (await client(None, **BEARER).get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["servers"] == [{"url": "/api"}]
    new_job = doc["components"]["schemas"]["NewJob"]
    assert (
        new_job["required"] == ["task"]
        and "delay" in new_job["properties"]["options"]["properties"]
    )
