"""The dashboard mounted in an application, which decides who may do what.

    python examples/mounted_dashboard.py

Needs ``pip install 'aqueue[web]' httpx`` (httpx sends the requests). Uses
AQUEUE_REDIS_URL / AQUEUE_DATABASE_URL when set, else the embedded default under
./.aqueue/. It serves nothing: it sends requests to the app in process and asserts each
answer (tests/docs/test_examples_docs.py runs it), so the block of docs/operations.md
taken from here is tested. In an application the middleware below is its own
authentication (a session, a login); here a header stands in.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

import aqueue.web
from aqueue import Queue

queue = Queue("web_demo", table=f"webdemo_{uuid.uuid4().hex[:8]}", key_prefix="webdemo")
SECRET = os.environ.get("AQUEUE_WEB_SECRET", uuid.uuid4().hex)  # keys the CSRF tokens


@queue.task
async def add(a: int, b: int) -> int:
    return a + b


@dataclass
class User:
    name: str
    is_admin: bool


class DemoLogin:
    """Stands in for the application's authentication: sets ``scope["user"]``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            name = dict(scope["headers"]).get(b"x-demo-user", b"").decode()
            scope["user"] = User(name, name == "admin") if name else None
        await self.app(scope, receive, send)


# The block of docs/operations.md "Mounted in your app":
def auth(request: HTTPConnection) -> aqueue.web.Role:  # sync or async
    user = request.scope.get("user")  # whatever your app's auth middleware set
    if user is None:
        return "forbidden"
    return "all" if user.is_admin else "read_only"


app = Starlette()
app.mount("/aqueue", aqueue.web.app(queue, auth=auth, secret=SECRET))
app.add_middleware(DemoLogin)


async def main() -> int:
    await queue.connect()
    job = await add.enqueue(1, 2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        page = f"/aqueue/jobs/{job.id}"
        assert (await c.get(page)).status_code == 401  # no user: "forbidden"
        ops = {"x-demo-user": "ops"}
        r = await c.get(page, headers=ops)  # a user who is not an admin: "read_only"
        assert r.status_code == 200
        assert job.id in r.text
        assert f'action="/aqueue/jobs/{job.id}/cancel"' not in r.text  # no buttons
        refused = await c.post(f"{page}/cancel", headers=ops)
        assert refused.status_code == 403
        admin = {"x-demo-user": "admin"}  # "all": the page offers the actions
        r = await c.get(page, headers=admin)
        assert f'action="/aqueue/jobs/{job.id}/cancel"' in r.text
    print("mounted dashboard ok: forbidden 401, read_only 200 and POST 403, all with actions")
    await queue.purge()
    be = await queue._backend()
    await be.store.drop_schema()
    await queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
