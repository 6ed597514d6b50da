"""What every handler shares: the app's state (:class:`Web`), the guard every request
passes (auth, CSRF cookie, security headers) and the page renderer (Jinja2,
autoescaped everywhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._models import JobStatus
from .._queue.admin import SCAN
from .._queue.client import QueueClient
from . import _format
from ._auth import CSRF_COOKIE, Auth, Role, csrf_token, new_csrf_cookie, role_of
from ._cache import Cached

HERE = Path(__file__).parent
COUNTS_MAX_AGE = 5.0
"""Seconds the counts by status are served before they are read again (see _cache)."""

SECURITY_HEADERS = [
    # Scripts and styles only from this app's own files: an injected <script> or inline
    # handler would not run even if escaping failed somewhere.
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


@dataclass
class Web:
    """What every handler reads: the queue, who may do what, the CSRF secret, pages."""

    queue: QueueClient
    auth: Auth
    secret: bytes
    templates: jinja2.Environment
    page_size: int = 50
    scan: int = SCAN
    """Jobs a search by task, text or time reads per page at most."""
    counts: Cached[dict[JobStatus, tuple[int, bool]]] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = Cached(self.queue.status_counts, COUNTS_MAX_AGE)


def web_of(request: HTTPConnection) -> Web:
    web: Web = request.app.state.aqueue_web
    return web


def role(request: HTTPConnection) -> Role:
    r: Role = request.scope.get("aqueue.role", "forbidden")
    return r


def base(request: HTTPConnection) -> str:
    """The app's URL prefix where it is mounted (``""`` at the root)."""
    scope = request.scope
    return str(scope.get("aqueue.base", scope.get("root_path", ""))).rstrip("/")


def render(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    web = web_of(request)
    cookie = request.scope.get("aqueue.csrf_cookie", "")
    html = web.templates.get_template(name).render(
        request=request,
        base=base(request),
        role=role(request),
        can_act=role(request) == "all",
        csrf=csrf_token(web.secret, cookie) if cookie else "",
        queue_name=web.queue.name,
        message=request.query_params.get("msg", ""),
        **ctx,
    )
    return HTMLResponse(html, status_code=status_code)


def route_path(scope: Scope) -> str:
    """The request's path below the app's prefix (servers and mounts keep the prefix
    in ``path`` and say it in ``root_path``)."""
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


class Guard:
    """Every request: its role from ``auth`` (``forbidden``: 401; a POST that is only
    ``read_only``: 403), the CSRF cookie set when missing, security headers added."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        the_role = await role_of(self.auth, conn)
        api = route_path(scope).startswith("/api/")
        refusal: Response | None = None
        if the_role == "forbidden":
            refusal = _refuse(api, 401, "authentication required")
            if "authorization" not in conn.headers and not api:
                refusal.headers["www-authenticate"] = 'Basic realm="aqueue", charset="UTF-8"'
        elif the_role == "read_only" and scope["method"] not in ("GET", "HEAD"):
            refusal = _refuse(api, 403, "read-only access: actions are not allowed")
        new_cookie = None
        if not conn.cookies.get(CSRF_COOKIE) and not api:
            new_cookie = new_csrf_cookie()
        scope["aqueue.role"] = the_role
        scope["aqueue.base"] = str(scope.get("root_path", ""))  # a Mount below extends it
        scope["aqueue.csrf_cookie"] = conn.cookies.get(CSRF_COOKIE) or new_cookie or ""
        path = str(scope.get("root_path", "")) or "/"
        secure = "; Secure" if scope.get("scheme") == "https" else ""

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                if new_cookie is not None:
                    cookie = (
                        f"{CSRF_COOKIE}={new_cookie}; Path={path}; HttpOnly; "
                        f"SameSite=Strict{secure}"
                    )
                    headers.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, send_wrapped)
            return
        await self.app(scope, receive, send_wrapped)


def _refuse(api: bool, status: int, why: str) -> Response:
    if api:
        return JSONResponse({"error": why}, status_code=status)
    return HTMLResponse(
        f"<!doctype html><title>aqueue: {status}</title><h1>{status}</h1><p>{why}</p>",
        status_code=status,
    )


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _format.when
    env.filters["ago"] = _format.ago
    env.filters["approx"] = _format.approx
    env.filters["pretty"] = _format.pretty
    env.filters["short_args"] = _format.short_args
    env.filters["error_line"] = _format.error_line
    return env
