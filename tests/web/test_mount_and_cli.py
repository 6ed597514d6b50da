"""The app mounted under a prefix in another app, the ``web`` command's refusals, and
that ``import aqueue`` stays free of the web dependencies."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.routing import Mount

import aqueue
import aqueue.web
from aqueue._cli import cli
from aqueue._cli.web import is_loopback
from aqueue.testing import Driver

from .conftest import TOKEN, USERS, basic


async def test_mounted_under_a_prefix(driven: Driver) -> None:
    job = await driven.queue.enqueue("boom")
    await driven.drain()
    dash = aqueue.web.app(
        driven.queue,
        auth=aqueue.web.any_of(aqueue.web.basic_auth(USERS), aqueue.web.token_auth(TOKEN)),  # type: ignore[arg-type]
    )
    parent = Starlette(routes=[Mount("/ops/aqueue", app=dash)])
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=basic("admin")
    ) as c:
        r = await c.get("/ops/aqueue/failed")
        assert r.status_code == 200
        assert 'href="/ops/aqueue/static/app.css"' in r.text
        assert f'href="/ops/aqueue/jobs/{job.id}"' in r.text
        assert "Path=/ops/aqueue;" in r.headers["set-cookie"]
        assert (await c.get("/ops/aqueue/static/app.js")).status_code == 200
        page = (await c.get(f"/ops/aqueue/jobs/{job.id}")).text
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert token is not None
        assert f'action="/ops/aqueue/jobs/{job.id}/retry"' in page
        r = await c.post(
            f"/ops/aqueue/jobs/{job.id}/retry",
            data={"csrf": token.group(1)},
            headers={"sec-fetch-site": "same-origin"},
        )
        assert r.status_code == 303 and r.headers["location"].startswith(
            f"/ops/aqueue/jobs/{job.id}?"
        )
        api = await c.post(
            "/ops/aqueue/api/jobs",
            json={"task": "add", "args": [1, 2]},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert api.status_code == 201
        assert api.headers["location"] == f"/ops/aqueue/api/jobs/{api.json()['id']}"
        doc = await c.get("/ops/aqueue/api/openapi.json")
        assert doc.json()["servers"] == [{"url": "/ops/aqueue/api"}]


def test_web_command_refuses_to_serve_without_credentials() -> None:
    runner = CliRunner()
    env = {k: "" for k in ("AQUEUE_WEB_TOKEN", "AQUEUE_WEB_USER", "AQUEUE_WEB_PASSWORD",
                           "AQUEUE_WEB_READONLY_USER", "AQUEUE_WEB_READONLY_PASSWORD")}  # fmt: skip
    r = runner.invoke(cli, ["web", "tests.web.live_app:queue"], env=env)
    assert r.exit_code == 2 and "no credentials" in r.output
    r = runner.invoke(cli, ["web", "tests.web.live_app:queue", "--no-auth", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "loopback only" in r.output
    r = runner.invoke(cli, ["web", "x:q"], env={**env, "AQUEUE_WEB_TOKEN": "short"})
    assert r.exit_code == 2 and "at least 16" in r.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.com")


def test_import_aqueue_does_not_import_the_web_stack() -> None:
    code = (
        "import sys, aqueue, aqueue._cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'starlette', 'uvicorn', 'jinja2', 'multipart', 'python_multipart'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_store_down_answers_503_without_the_url() -> None:
    queue = aqueue.Queue(
        "down",
        redis_url="redis://:REDISPW@127.0.0.1:1/0",
        database_url="mysql+asyncmy://root:SQLPW@127.0.0.1:1/test",
    )
    app = aqueue.web.app(queue, auth=aqueue.web.token_auth(TOKEN))
    headers = {"authorization": f"Bearer {TOKEN}"}
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as c:
            for path in ("/", "/jobs", "/api/jobs/x"):
                r = await c.get(path)
                assert r.status_code == 503, (path, r.text[:300])
                assert "SQLPW" not in r.text and "REDISPW" not in r.text
            r = await c.post("/api/jobs", json={"task": "t"})
            assert r.status_code in (404, 503) and "SQLPW" not in r.text
    finally:
        await queue.close()
