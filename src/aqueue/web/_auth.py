"""Who may do what: the ``auth`` callable's roles, ready-made callables (basic auth, a
bearer token, both from the environment for the standalone server), and the CSRF
check of every state-changing request.

CSRF is refused twice over: the request must come from the same origin (the browser's
``Sec-Fetch-Site``, else its ``Origin``), and carry a token that is an HMAC of a random
cookie under the app's secret, so neither a cross-site form nor a planted cookie passes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from starlette.requests import HTTPConnection

Role = Literal["all", "read_only", "forbidden"]
"""What a request may do: everything, only read, or nothing."""

ROLES: tuple[Role, ...] = ("all", "read_only", "forbidden")

Auth = Callable[[HTTPConnection], "Role | Awaitable[Role]"]
"""Decides the role of each request (sync or async)."""

CSRF_COOKIE = "aqueue_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


async def role_of(auth: Auth, conn: HTTPConnection) -> Role:
    """The role ``auth`` gives this request; anything but a known role is ``forbidden``."""
    role = auth(conn)
    if inspect.isawaitable(role):
        role = await role
    return role if role in ROLES else "forbidden"


def _credentials(conn: HTTPConnection) -> tuple[str | None, str | None, str | None]:
    """(basic user, basic password, bearer token) of the Authorization header."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return None, None, value.strip()
    if scheme.lower() == "basic" and value:
        try:
            user, sep, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None, None, None
        if sep:
            return user, password, None
    return None, None, None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def basic_auth(users: Mapping[str, tuple[str, Role]]) -> Auth:
    """An ``auth`` for HTTP basic auth: ``{user: (password, role)}``."""
    known = dict(users)

    def auth(conn: HTTPConnection) -> Role:
        user, password, _ = _credentials(conn)
        if user is None or password is None or user not in known:
            return "forbidden"
        expected, role = known[user]
        return role if _same(password, expected) else "forbidden"

    return auth


def token_auth(token: str, role: Role = "all") -> Auth:
    """An ``auth`` for one secret token, sent as ``Authorization: Bearer TOKEN`` (the
    HTTP API) or as the password of basic auth, any user name (a browser's prompt)."""
    if len(token) < 16:
        raise ValueError("the token must be at least 16 characters")

    def auth(conn: HTTPConnection) -> Role:
        _, password, bearer = _credentials(conn)
        given = bearer if bearer is not None else password
        return role if given is not None and _same(given, token) else "forbidden"

    return auth


def any_of(*auths: Auth) -> Auth:
    """The best role any of ``auths`` gives (``all`` over ``read_only``)."""

    async def auth(conn: HTTPConnection) -> Role:
        best: Role = "forbidden"
        for a in auths:
            role = await role_of(a, conn)
            if role == "all":
                return role
            if role == "read_only":
                best = role
        return best

    return auth


def allow_all(conn: HTTPConnection) -> Role:
    """No authentication (only for a server on loopback, or behind your own auth)."""
    return "all"


def env_auth(environ: Mapping[str, str] | None = None) -> Auth | None:
    """The standalone server's ``auth`` from the environment: ``AQUEUE_WEB_TOKEN``
    and/or ``AQUEUE_WEB_USER`` + ``AQUEUE_WEB_PASSWORD`` (role ``all``), and
    ``AQUEUE_WEB_READONLY_USER`` + ``AQUEUE_WEB_READONLY_PASSWORD``. ``None``: none set."""
    env = os.environ if environ is None else environ
    auths: list[Auth] = []
    if env.get("AQUEUE_WEB_TOKEN"):
        auths.append(token_auth(env["AQUEUE_WEB_TOKEN"]))
    users: dict[str, tuple[str, Role]] = {}
    if env.get("AQUEUE_WEB_USER") and env.get("AQUEUE_WEB_PASSWORD"):
        users[env["AQUEUE_WEB_USER"]] = (env["AQUEUE_WEB_PASSWORD"], "all")
    if env.get("AQUEUE_WEB_READONLY_USER") and env.get("AQUEUE_WEB_READONLY_PASSWORD"):
        users[env["AQUEUE_WEB_READONLY_USER"]] = (env["AQUEUE_WEB_READONLY_PASSWORD"], "read_only")
    if users:
        auths.append(basic_auth(users))
    if not auths:
        return None
    return auths[0] if len(auths) == 1 else any_of(*auths)


# -- CSRF -------------------------------------------------------------------------------


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(secret: bytes, cookie: str) -> str:
    """The form token bound to this browser's cookie."""
    return hmac.new(secret, cookie.encode("utf-8"), "sha256").hexdigest()


def same_origin(conn: HTTPConnection) -> bool:
    """True when the browser says the request comes from this site: ``Sec-Fetch-Site:
    same-origin``, or (older browsers) an ``Origin`` equal to this server's. A request
    with neither is refused: every browser sends one of them with a POST."""
    site = conn.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = conn.headers.get("origin")
    if origin is None or origin == "null":
        return False
    host = conn.headers.get("host", "")
    return origin in (f"{conn.url.scheme}://{host}", f"http://{host}", f"https://{host}")


def csrf_ok(conn: HTTPConnection, secret: bytes, given: str | None) -> bool:
    cookie = conn.cookies.get(CSRF_COOKIE)
    if not cookie or not given or not same_origin(conn):
        return False
    return _same(given, csrf_token(secret, cookie))
