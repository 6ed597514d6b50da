"""The ASGI app: the routes of the pages, the actions and the API, the static files,
behind the guard.

The app needs no startup: the queue connects at its first use, so mounted in another
app (whose lifespan Starlette does not pass to a mount) it works as it is. Run on its
own (``python -m aqueue web``), its lifespan closes the queue at shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .._errors import BackendError
from .._queue.client import QueueClient
from . import _actions, _api, _pages
from ._auth import Auth
from ._core import HERE, Guard, Web, render, templates

log = logging.getLogger("aqueue.web")


def app(
    queue: QueueClient,
    *,
    auth: Auth,
    secret: bytes | str | None = None,
    page_size: int = 50,
) -> Starlette:
    """The dashboard and HTTP API of ``queue`` as an ASGI app: mount it
    (``app.mount("/aqueue", aqueue.web.app(queue, auth=...))``) or serve it
    (``python -m aqueue web``).

    ``auth(request)`` returns ``"all"``, ``"read_only"`` or ``"forbidden"`` for each
    request (see :func:`basic_auth`, :func:`token_auth`, :func:`any_of`). ``secret``
    keys the CSRF tokens: give the same one to every process serving the app (default:
    random, one process)."""
    if not callable(auth):
        raise TypeError("auth must be a callable returning 'all', 'read_only' or 'forbidden'")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    web = Web(queue, auth, key or secrets.token_bytes(32), templates(), page_size)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await web.counts.close()
            await queue.close()

    routes = [
        *_pages.routes(),
        *_actions.routes(),
        Mount("/api", routes=_api.routes()),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={BackendError: _unavailable},
    )
    starlette.state.aqueue_web = web
    starlette.add_middleware(Guard, auth=auth)
    return starlette


async def _unavailable(request: Request, exc: Exception) -> Response:
    """A page whose SQL or Redis read failed: 503, the error logged (its text is the
    driver's, which may name a server or more), not shown."""
    log.warning("dashboard %s: %s: %s", request.url.path, type(exc).__name__, exc)
    return render(
        request,
        "refused.html",
        status_code=503,
        title="Unavailable",
        why=f"The job store or Redis did not answer ({type(exc).__name__}). Try again shortly.",
    )
